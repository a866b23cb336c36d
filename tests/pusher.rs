//! The Pusher protocol's edges, from the client's and the attacker's side: refusals with the codes
//! pusher-js acts on, heartbeats, the HTTP API's errors, and apps kept apart from each other and from
//! protocol v1. The happy paths run with the real client libraries (tests/pusher_clients.rs).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::pusher::{api, connect as pusher, subscribe};

use common::{Client, Node, NodeOpts, http_request};
use serde_json::{Value, json};
use shards::pusher::signature::{channel_auth, sign_api_request};

/// Two apps, the second with a cap of one connection, and a disabled third.
fn node() -> Node {
    Node::start(NodeOpts::new().shards(2).set(
        "pusher.apps",
        r#"[{ id = "1", key = "k1", secret = "s1" },
            { id = "2", key = "k2", secret = "s2", max_connections = 1 },
            { id = "3", key = "k3", secret = "s3", enabled = false }]"#,
    ))
}

/// The close code after a `pusher:error` with the same code.
fn refused(node: &Node, path: &str, code: u16) {
    let mut c = Client::try_connect(node.ws_addr, path, Duration::from_secs(5)).expect("upgrade");
    let info = c.expect_close(code);
    let error = info
        .data
        .first()
        .unwrap_or_else(|| panic!("no pusher:error before {code}"));
    assert_eq!(error["event"], "pusher:error", "{error}");
    assert_eq!(error["data"]["code"], code, "{error}");
}

#[test]
fn refusals_carry_the_codes_pusher_clients_act_on() {
    let node = node();
    refused(&node, "/app/nope?protocol=7", 4001);
    refused(&node, "/app/k1", 4008);
    refused(&node, "/app/k1?protocol=seven", 4006);
    refused(&node, "/app/k1?protocol=8", 4007);
    refused(&node, "/app/k3?protocol=7", 4003);
    // App 2 holds one connection; the second is told to back off; once the first leaves, room again.
    let (first, _) = pusher(&node, "k2");
    refused(&node, "/app/k2?protocol=7", 4100);
    first.close();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let path = "/app/k2?protocol=7";
        let mut c = Client::try_connect(node.ws_addr, path, Duration::from_secs(5)).unwrap();
        if c.recv_json()["event"] == "pusher:connection_established" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "app 2 never had room again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Malformed input gets an error frame, and the connection lives on.
    let (mut c, _) = pusher(&node, "k1");
    c.send_text("not json");
    assert_eq!(c.recv_json()["event"], "pusher:error");
    c.send_json(&json!({"event": "pusher:subscribe", "data": {"channel": "bad name!"}}));
    let e = c.recv_json();
    assert_eq!(
        (e["event"].as_str(), e["data"]["status"].as_u64()),
        (Some("pusher:subscription_error"), Some(400)),
        "{e}"
    );
    c.send_json(&json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(c.recv_json()["event"], "pusher:pong");
    assert_eq!(
        node.metric_sum(
            "gateway_connections_closed_total",
            &[("reason", "pusher_app_unknown")]
        ),
        1.0
    );
}

#[test]
fn the_server_pings_and_closes_a_silent_client_with_4201() {
    let node = Node::start(
        NodeOpts::new()
            .set("heartbeat.interval_ms", 300)
            .set("heartbeat.timeout_ms", 900)
            .env("GATEWAY_PUSHER_APPS", "1:k1:s1"),
    );
    let (mut c, _) = pusher(&node, "k1");
    // The server's ping is Pusher's (a text frame), answered by the client's pong: the connection lives.
    for _ in 0..3 {
        let ping = c.recv_json();
        assert_eq!(ping["event"], "pusher:ping", "{ping}");
        c.send_json(&json!({"event": "pusher:pong", "data": {}}));
    }
    // A client that stops answering is closed with 4201 (pusher-js reconnects at once).
    let info = c.expect_close(4201);
    assert!(
        info.data.iter().all(|f| f["event"] == "pusher:ping"),
        "{:?}",
        info.data
    );
}

#[test]
fn private_channels_need_the_socket_s_own_signature() {
    let node = node();
    let (mut a, socket_a) = pusher(&node, "k1");
    let (mut b, socket_b) = pusher(&node, "k1");
    // B replays A's signature: refused, as is a signature by another app's secret.
    let for_a = channel_auth("k1", "s1", &socket_a, "private-x", None);
    let for_b_by_app2 = channel_auth("k1", "s2", &socket_b, "private-x", None);
    for stolen in [&for_a, &for_b_by_app2, &"k1:00".to_owned(), &String::new()] {
        b.send_json(
            &json!({"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": stolen}}),
        );
        let e = b.recv_json();
        assert_eq!(e["event"], "pusher:subscription_error", "{e}");
        assert_eq!(e["data"]["status"], 401, "{e}");
    }
    subscribe(&mut a, "private-x", Some(&for_a));
    let (status, _) = api(
        &node,
        ("1", "k1", "s1"),
        "POST",
        "/events",
        r#"{"name":"e","channel":"private-x","data":"{}"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(a.recv_json()["event"], "e");
    // B got nothing: its next frame is the pong to its own ping.
    b.send_json(&json!({"event": "pusher:ping"}));
    assert_eq!(b.recv_json()["event"], "pusher:pong");
}

#[test]
fn apps_and_protocol_v1_never_meet() {
    let node = node();
    let (mut one, _) = pusher(&node, "k1");
    subscribe(&mut one, "news", None);
    let mut v1 = node.identified("alice");
    let r = v1.request(json!({"op": "subscribe", "id": "s", "channel": "news"}));
    assert_eq!(r["status"], "subscribed", "{r}");
    // v1 cannot name an app's internal channel.
    let r = v1.request(json!({"op": "subscribe", "id": "t", "channel": "\u{1}1\u{1}news"}));
    assert_eq!(r["op"], "error", "{r}");
    // App 2's trigger and a v1 publish on `news` reach neither app 1 nor each other's clients.
    let (status, _) = api(
        &node,
        ("2", "k2", "s2"),
        "POST",
        "/events",
        r#"{"name":"e2","channel":"news","data":"x"}"#,
    );
    assert_eq!(status, 200);
    let r = node.api(
        None,
        "POST",
        "/v1/publish",
        &json!({"channel": "news", "data": {"v": 1}}),
    );
    assert_eq!(r.0, 200, "{r:?}");
    let (status, _) = api(
        &node,
        ("1", "k1", "s1"),
        "POST",
        "/events",
        r#"{"name":"e1","channel":"news","data":"y"}"#,
    );
    assert_eq!(status, 200);
    let got = one.recv_json();
    assert_eq!(
        (got["event"].as_str(), got["data"].as_str()),
        (Some("e1"), Some("y")),
        "{got}"
    );
    let got = v1.recv_json();
    assert_eq!(got["data"], json!({"v": 1}), "v1 sees only v1: {got}");
}

#[test]
fn the_http_api_refuses_what_it_cannot_trust_or_carry() {
    let node = node();
    let app = ("1", "k1", "s1");
    let ok = r#"{"name":"e","channels":["a"],"data":"{}"}"#;
    assert_eq!(api(&node, app, "POST", "/events", ok).0, 200);
    // Unknown app, wrong secret, another app's key, a disabled app.
    assert_eq!(api(&node, ("9", "k1", "s1"), "POST", "/events", ok).0, 404);
    assert_eq!(
        api(&node, ("1", "k1", "wrong"), "POST", "/events", ok).0,
        401
    );
    assert_eq!(api(&node, ("1", "k2", "s2"), "POST", "/events", ok).0, 401);
    assert_eq!(api(&node, ("3", "k3", "s3"), "POST", "/events", ok).0, 403);
    // Unsigned, stale, or a body other than the one signed.
    let (status, body) = http_request(node.ws_addr, "POST", "/apps/1/events", &[], ok).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let stale = sign_api_request(
        ("k1", "s1"),
        ("POST", "/apps/1/events"),
        &[],
        ok.as_bytes(),
        1_000_000_000,
    );
    let (status, _) = http_request(
        node.ws_addr,
        "POST",
        &format!("/apps/1/events?{stale}"),
        &[],
        ok,
    )
    .unwrap();
    assert_eq!(status, 401);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = sign_api_request(
        ("k1", "s1"),
        ("POST", "/apps/1/events"),
        &[],
        ok.as_bytes(),
        now,
    );
    let other = r#"{"name":"e","channels":["b"],"data":"{}"}"#;
    let (status, _) = http_request(
        node.ws_addr,
        "POST",
        &format!("/apps/1/events?{signed}"),
        &[],
        other,
    )
    .unwrap();
    assert_eq!(status, 401);
    // Signed but invalid: 400 with the reason; too large: 413 before the body is read.
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let too_many = json!({"name": "e", "channels": many, "data": "x"}).to_string();
    for bad in [
        too_many.as_str(),
        r#"{"name":"e","data":"x"}"#,
        r#"{"name":"e","channel":"bad name","data":"x"}"#,
        "[",
        r#"{"batch":[]}"#,
    ] {
        let (status, body) = api(&node, app, "POST", "/events", bad);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"channel": format!("c{i}"), "name": "e", "data": "x"}))
        .collect();
    assert_eq!(
        api(
            &node,
            app,
            "POST",
            "/batch_events",
            &json!({"batch": eleven}).to_string()
        )
        .0,
        400
    );
    let big = format!(
        r#"{{"name":"e","channel":"a","data":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    assert_eq!(api(&node, app, "POST", "/events", &big).0, 413);
    assert_eq!(api(&node, app, "GET", "/events", "").0, 405);
    assert_eq!(api(&node, app, "POST", "/nothing", "").0, 404);
    // The WebSocket endpoints are untouched by all this.
    let (mut c, _) = pusher(&node, "k1");
    c.send_json(&json!({"event": "pusher:ping"}));
    assert_eq!(c.recv_json()["event"], "pusher:pong");
}

#[test]
fn a_drain_tells_pusher_clients_to_reconnect_at_once() {
    let node = Node::start(
        NodeOpts::new()
            .env("GATEWAY_PUSHER_APPS", "1:k1:s1")
            .set("shutdown.drain_delay_ms", 0)
            .set("shutdown.drain_window_ms", 500)
            .set("shutdown.drain_interval_ms", 50),
    );
    let mut clients: Vec<Client> = (0..20).map(|_| pusher(&node, "k1").0).collect();
    let mut v1 = node.identified("v1-user");
    node.sigterm();
    // Pusher clients get 4200 (pusher-js reconnects at once, through the load balancer, to a node
    // that is not draining); v1 clients keep their 1012 with the reconnect hint.
    for c in &mut clients {
        c.expect_close(4200);
    }
    v1.expect_close(1012);
}

#[test]
fn odd_api_paths_are_refused_not_crashed_on() {
    let node = node();
    let app = ("1", "k1", "s1");
    for (method, path) in [
        ("POST", "/users/terminate_connections"),
        ("POST", "/users//terminate_connections"),
        ("GET", "/channels/"),
        ("GET", "/channels//users"),
        ("GET", "/channels/a/users/b"),
        ("POST", "/events/"),
        ("GET", ""),
    ] {
        let (status, body) = api(&node, app, method, path, "");
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {body}"
        );
    }
    // Still serving.
    let (mut c, _) = pusher(&node, "k1");
    c.send_json(&json!({"event": "pusher:ping"}));
    assert_eq!(c.recv_json()["event"], "pusher:pong");
}
