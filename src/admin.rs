//! The admin HTTP server (`/healthz`, `/readyz`, `/metrics`, `/dashboard`, the `/v1/` API) on its own
//! "control" thread.
//!
//! The shards run glommio on pinned cores; the admin port must keep answering even when they are busy or
//! stopping, so it gets a separate thread with a small tokio current-thread runtime and a hyper HTTP/1.1
//! server. It only reads shared state ([`shards::NodeStatus`], the Prometheus handle), so it never
//! touches the data plane. Every connection is bounded (header read timeout, lifetime cap, a cap on
//! concurrent connections) so a slow or hostile client cannot hold the port. Routes live in [`route`].

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Time a client gets to send a complete request head (also bounds idle keep-alive connections).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one admin connection; then it is shut down gracefully after the request in flight.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Time a connection gets to finish its request in flight after a graceful shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Admin connections served at once; further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// Pause after a failed accept (e.g. EMFILE) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often the Prometheus recorder's upkeep (histogram draining) runs.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);
/// Content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// What the admin server reads to answer requests.
pub struct AdminState {
    /// Readiness and capacity of the node, written by the shards.
    pub status: Arc<shards::NodeStatus>,
    /// Renders every metric the process recorded.
    pub metrics: PrometheusHandle,
    /// This node's id (for logs).
    pub node_id: String,
    /// The HTTP API for backends under `/v1/`; `None`: those paths are 404.
    pub api: Option<Arc<crate::api::Api>>,
    /// Cluster mode's Redis link state; `None` in embedded mode.
    pub cluster: Option<Arc<crate::bridge::ClusterView>>,
}

/// Starts the admin server on `listener` in a thread named "control"; it runs until the process exits.
///
/// The runtime is built and the listener registered before the thread starts, so set-up errors are
/// returned here and connects succeed as soon as this returns (the socket is already listening).
pub fn spawn(listener: std::net::TcpListener, state: AdminState) -> io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let listener = {
        let _context = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || runtime.block_on(serve(listener, Arc::new(state))))
}

/// Accept loop: one task per connection, at most [`MAX_CONNECTIONS`] at once.
async fn serve(listener: tokio::net::TcpListener, state: Arc<AdminState>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, node = %state.node_id, "admin server listening");
    }
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(METRICS_UPKEEP);
        loop {
            tick.tick().await;
            metrics.run_upkeep();
        }
    });
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            serve_connection(stream, state).await;
            drop(permit);
        });
    }
}

/// Serves HTTP/1.1 on one connection until the client leaves or a time limit hits.
async fn serve_connection(stream: tokio::net::TcpStream, state: Arc<AdminState>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move {
            let response = match &state.api {
                Some(api) if req.uri().path().starts_with("/v1/") => api.handle(req).await,
                _ => route(&req, &state),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = match tokio::time::timeout(CONNECTION_LIFETIME, conn.as_mut()).await {
        Ok(result) => result,
        Err(_) => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(SHUTDOWN_GRACE, conn)
                .await
                .unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "admin connection ended with an error");
    }
}

/// Answers one request. Add routes here: match the path, then the method (GET and HEAD are read-only).
pub fn route<B>(req: &Request<B>, state: &AdminState) -> Response<Full<Bytes>> {
    let readonly = matches!(*req.method(), Method::GET | Method::HEAD);
    match req.uri().path() {
        "/healthz" | "/readyz" | "/metrics" | "/dashboard" | "/dashboard/data" if !readonly => {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".into(),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match state.status.readiness() {
            Ok(()) => match &state.cluster {
                Some(c) if !c.reached_once() => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "waiting for the first redis session\n".into(),
                ),
                Some(c) if c.require_for_ready && !c.redis_up() => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "redis unavailable\n".into(),
                ),
                _ => text(StatusCode::OK, "ready\n".into()),
            },
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        },
        "/metrics" => {
            let mut response = text(StatusCode::OK, state.metrics.render());
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            response
        }
        "/dashboard" => crate::dashboard::page(),
        "/dashboard/data" => crate::dashboard::data(state),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// A plain-text response with `status` and `body`.
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    /// Sends one `method path` request with `Connection: close`; returns (status, head, body).
    fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .expect("a complete response head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    #[test]
    fn serves_health_readiness_and_metrics() {
        let status = Arc::new(shards::NodeStatus::new(1, 10));
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("gateway_test_total").increment(3)
        });
        let state = AdminState {
            status: status.clone(),
            metrics: recorder.handle(),
            node_id: "test".into(),
            api: None,
            cluster: None,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = spawn(listener, state).unwrap();
        assert_eq!(thread.thread().name(), Some("control"));

        let (code, _, body) = request(addr, "GET", "/healthz");
        assert_eq!((code, body.as_str()), (200, "ok\n"));
        let (code, _, body) = request(addr, "GET", "/readyz");
        assert_eq!((code, body.as_str()), (503, "0/1 shards accepting\n"));
        status.shard_accepting();
        let (code, _, body) = request(addr, "GET", "/readyz");
        assert_eq!((code, body.as_str()), (200, "ready\n"));
        status.begin_shutdown();
        let (code, _, body) = request(addr, "GET", "/readyz");
        assert_eq!((code, body.as_str()), (503, "shutting down\n"));

        let (code, head, body) = request(addr, "GET", "/metrics");
        assert_eq!(code, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(body.contains("gateway_test_total 3"), "{body}");

        let (code, head, body) = request(addr, "HEAD", "/healthz");
        assert_eq!((code, body.as_str()), (200, ""));
        assert!(head.contains("content-length: 3"), "{head}");
        assert_eq!(request(addr, "GET", "/nope").0, 404);
        assert_eq!(request(addr, "GET", "/healthz/x").0, 404);
        let (code, head, _) = request(addr, "POST", "/healthz");
        assert_eq!(code, 405);
        assert!(head.contains("allow: get, head"), "{head}");
    }

    #[test]
    fn serves_the_dashboard_and_its_data() {
        let status = Arc::new(shards::NodeStatus::new(2, 100));
        status.shard_accepting();
        status.shard_accepting();
        assert!(status.try_admit());
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            let m = shards::metrics::ShardMetrics::register(1);
            m.connections_open.increment(1.0);
            m.routed_local.increment(7);
            m.slow_consumer.increment(1);
        });
        let state = AdminState {
            status,
            metrics: recorder.handle(),
            node_id: "solo".into(),
            api: None,
            cluster: None,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        spawn(listener, state).unwrap();

        let (code, head, body) = request(addr, "GET", "/dashboard");
        assert_eq!(code, 200);
        assert!(head.contains("content-type: text/html"), "{head}");
        assert!(
            head.contains("content-security-policy: default-src 'none'"),
            "{head}"
        );
        assert_eq!(body, crate::dashboard::PAGE);

        let (code, head, body) = request(addr, "GET", "/dashboard/data");
        assert_eq!(code, 200);
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("cache-control: no-store"), "{head}");
        let mut data: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(data["ts_ms"].as_u64().unwrap() > 0, "{data}");
        data["ts_ms"] = 0.into();
        let shard = |i: u64, conns: u64, delivered: u64, slow: u64| {
            serde_json::json!({"shard": i, "connections": conns, "delivered_total": delivered,
                               "cross_shard_total": 0, "slow_consumer_total": slow})
        };
        assert_eq!(
            data,
            serde_json::json!({
                "ts_ms": 0, "mode": "embedded", "redis": "embedded",
                "node": {"id": "solo", "state": "alive", "ready": true, "readiness": "ready",
                         "connections": 1, "max_connections": 100,
                         "shards": [shard(0, 0, 0, 0), shard(1, 1, 7, 1)]},
                "nodes": [{"id": "solo", "state": "alive", "connections": 1, "shards": 2,
                           "ws": "", "admin": "", "heartbeat_ms": 0, "self": true}],
            })
        );

        let (code, head, _) = request(addr, "POST", "/dashboard/data");
        assert_eq!(code, 405);
        assert!(head.contains("allow: get, head"), "{head}");
    }
}
