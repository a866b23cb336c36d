//! Pusher helpers: a protocol-7 client past `connection_established`, subscribing, and signed HTTP
//! API calls (the signature is the gateway's own, checked against Pusher's documented examples in
//! its unit tests; the real SDKs are exercised by tests/pusher_clients.rs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use shards::pusher::signature::sign_api_request;

use super::{Client, Node, http_request};

/// A Pusher client of the app `key`, past `connection_established`; returns it with its socket id.
pub fn connect(node: &Node, key: &str) -> (Client, String) {
    let path = format!("/app/{key}?protocol=7&client=js&version=8.6.0&flash=false");
    let mut c = Client::try_connect(node.ws_addr, &path, Duration::from_secs(5)).expect("connect");
    let hello = c.recv_json();
    assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
    let data: Value =
        serde_json::from_str(hello["data"].as_str().expect("data is a string")).unwrap();
    let socket_id = data["socket_id"].as_str().expect("socket_id").to_owned();
    let (a, b) = socket_id.split_once('.').expect("n.n");
    assert!(
        a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok(),
        "{socket_id}"
    );
    assert!(
        data["activity_timeout"].as_u64().is_some_and(|t| t > 0),
        "{data}"
    );
    (c, socket_id)
}

/// Sends `pusher:subscribe` with `auth` and `channel_data`; returns the answer.
pub fn subscribe_with(
    c: &mut Client,
    channel: &str,
    auth: Option<&str>,
    channel_data: Option<&str>,
) -> Value {
    let mut data = json!({"channel": channel, "auth": auth.unwrap_or("")});
    if let Some(cd) = channel_data {
        data["channel_data"] = json!(cd);
    }
    c.send_json(&json!({"event": "pusher:subscribe", "data": data}));
    c.recv_json()
}

/// Subscribes and asserts `subscription_succeeded`; returns its data.
pub fn subscribe(c: &mut Client, channel: &str, auth: Option<&str>) -> Value {
    let ok = subscribe_with(c, channel, auth, None);
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["channel"], channel);
    ok
}

/// A signed HTTP API call for app `(id, key, secret)` on `node`'s WebSocket port (`path` may carry
/// query parameters: they are signed too); returns (status, body as JSON, or as a string when it is
/// not JSON).
pub fn api(
    node: &Node,
    (id, key, secret): (&str, &str, &str),
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (path, params) = path.split_once('?').unwrap_or((path, ""));
    let params: Vec<(&str, &str)> = params
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    let full = format!("/apps/{id}{path}");
    let query = sign_api_request(
        (key, secret),
        (method, &full),
        &params,
        body.as_bytes(),
        now,
    );
    let (status, text) =
        http_request(node.ws_addr, method, &format!("{full}?{query}"), &[], body).expect("request");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// The `data` of a Pusher frame, decoded when it is a JSON string.
pub fn data(frame: &Value) -> Value {
    match frame["data"].as_str() {
        Some(s) => serde_json::from_str(s).unwrap_or(Value::String(s.to_owned())),
        None => frame["data"].clone(),
    }
}
