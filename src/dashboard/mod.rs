//! The live dashboard on the admin port: `GET /dashboard` (one HTML page) and `GET /dashboard/data`
//! (the JSON it polls every second).
//!
//! Why it exists: `/metrics` needs a Prometheus and a Grafana to become readable, and `/v1/nodes` is
//! one JSON document per node. An operator looking at a node (or a cluster) during an incident wants
//! one page that shows, live and with nothing else installed, which nodes are alive, draining or dead,
//! where the connections are, how fast messages flow and whether clients are being dropped as slow
//! consumers. The page is embedded in the binary ([`PAGE`], `page.html`: HTML, CSS and JS inline, no
//! external assets), so it works offline and cannot drift from the server it is served by.
//!
//! Like `/metrics`, both routes are unauthenticated: the admin port is internal (docs/API.md).
//!
//! # `GET /dashboard/data`
//!
//! ```json
//! {"ts_ms": 1700000000000, "mode": "cluster", "redis": "up",
//!  "node": {"id": "gw-1", "state": "alive", "ready": true, "readiness": "ready",
//!           "connections": 3, "max_connections": 100000,
//!           "shards": [{"shard": 0, "connections": 2, "delivered_total": 40,
//!                       "cross_shard_total": 5, "slow_consumer_total": 0}, ...]},
//!  "nodes": [{"id": "gw-1", "state": "alive", "connections": 3, "shards": 2, "ws": "10.0.0.1:8080",
//!             "admin": "10.0.0.1:9090", "heartbeat_ms": 1699999999900, "self": true}, ...]}
//! ```
//!
//! - `ts_ms`: wall-clock ms when the snapshot was taken; the page divides counter deltas by the
//!   difference of two `ts_ms` to get rates.
//! - `mode`: `"cluster"` (with `redis_url`) or `"embedded"`.
//! - `redis`: the Redis link, `"up"`, `"down"`, or `"embedded"` without Redis.
//! - `node`: this node, live. `state` is `"alive"` or `"draining"` (shutdown began); `ready` and
//!   `readiness` are what `/readyz` says of the shards (`readiness` is the reason when not ready);
//!   `connections` and `max_connections` are the node's open connections and cap. `shards` lists every
//!   shard with its open connections and counter totals since start: messages handed to its
//!   connections (`delivered_total`, `gateway_messages_routed_total{path="local"}`), messages passed to
//!   another shard (`cross_shard_total`) and connections closed as slow consumers (code 4008,
//!   `slow_consumer_total`).
//! - `nodes`: the cluster's nodes sorted by id: `state` `"alive"`, `"draining"` or `"dead"`, open
//!   `connections`, `shards`, addresses and the last heartbeat. Other nodes are as of this node's last
//!   registry read (every `cluster.heartbeat_interval_ms`; stale while Redis is down); this node's own
//!   row (`"self": true`) has its live figures. In embedded mode it is this node alone.

mod data;
mod prom;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Response, StatusCode};

use crate::admin::AdminState;

/// The page: HTML with its CSS and JS inline.
pub const PAGE: &str = include_str!("page.html");

/// The page may run its own inline script and style and fetch from this server, nothing else.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `GET /dashboard`.
pub fn page() -> Response<Full<Bytes>> {
    let mut response = respond(
        Bytes::from_static(PAGE.as_bytes()),
        "text/html; charset=utf-8",
    );
    response.headers_mut().insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    response
}

/// `GET /dashboard/data`.
pub fn data(state: &AdminState) -> Response<Full<Bytes>> {
    let body = data::snapshot(state).to_string();
    respond(Bytes::from(body), "application/json")
}

/// A 200 with `body` of `content_type` that no cache keeps.
fn respond(body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
