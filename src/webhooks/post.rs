//! One webhook POST, retried: HTTP/1.1 over a fresh TCP connection (hyper's client), bounded in
//! time, retried with exponential backoff (100 ms doubling to 10 s) until the target answers 2xx or
//! `retry_for` has passed, then dropped. Counted in `gateway_webhooks_{sent,failed,retried,dropped}_total`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use metrics::counter;
use tracing::warn;

/// Bound on one attempt (connect, send, answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a POST goes and how it is signed.
#[derive(Clone, Debug)]
pub struct Request {
    /// Host, port and path of the target.
    pub host: String,
    pub port: u16,
    pub path: String,
    /// Extra headers (signature, key).
    pub headers: Vec<(&'static str, String)>,
    /// The signed body.
    pub body: Bytes,
}

/// Posts `req` until it is accepted or `retry_for` has passed.
pub async fn deliver(req: Request, retry_for: Duration) {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(&req)).await;
        let error = match outcome {
            Ok(Ok(status)) if (200..300).contains(&status) => {
                counter!("gateway_webhooks_sent_total").increment(1);
                return;
            }
            Ok(Ok(status)) => format!("HTTP {status}"),
            Ok(Err(e)) => e,
            Err(_) => "timed out".to_owned(),
        };
        counter!("gateway_webhooks_failed_total").increment(1);
        if started.elapsed() + backoff > retry_for {
            counter!("gateway_webhooks_dropped_total").increment(1);
            warn!(host = %req.host, port = req.port, path = %req.path, error = %error, "webhook dropped after retries");
            return;
        }
        counter!("gateway_webhooks_retried_total").increment(1);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One attempt: the answer's status.
async fn attempt(req: &Request) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect((req.host.as_str(), req.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let mut builder = hyper::Request::post(&req.path)
        .header("host", format!("{}:{}", req.host, req.port))
        .header("content-type", "application/json")
        .header("user-agent", "gateway-webhooks")
        .header("connection", "close");
    for (k, v) in &req.headers {
        builder = builder.header(*k, v);
    }
    let request = builder
        .body(Full::new(req.body.clone()))
        .map_err(|e| format!("request: {e}"))?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = answer.status().as_u16();
    // Read the answer to its end so the connection closes cleanly.
    let _ = answer.into_body().collect().await;
    driver.abort();
    Ok(status)
}
