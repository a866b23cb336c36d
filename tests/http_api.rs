//! The HTTP API for backends on the admin port (docs/API.md), against a real node with two shards:
//! publish, send, presence, disconnect (4010) and close (1001), with and without the bearer key.

mod common;

use common::{Client, Node, NodeOpts, http_request};
use serde_json::{Value, json};

const KEY: &str = "s3cret-key";

/// A call to the API with the right key; returns (status, JSON body).
fn api(node: &Node, method: &str, path: &str, body: &Value) -> (u16, Value) {
    node.api(Some(KEY), method, path, body)
}

fn node() -> Node {
    Node::start(NodeOpts::new().shards(2).set_str("api.key", KEY))
}

#[test]
fn publish_reaches_every_subscriber_without_a_from() {
    let node = node();
    let mut subs: Vec<Client> = (0..6)
        .map(|i| {
            let mut c = node.identified(&format!("sub{i}"));
            let ack = c.request(json!({"op": "subscribe", "id": "s", "channel": "news"}));
            assert_eq!(ack["status"], "subscribed");
            c
        })
        .collect();
    let (status, body) = api(
        &node,
        "POST",
        "/v1/publish",
        &json!({"channel": "news", "data": {"n": 1, "t": "x"}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "published", "conns": 6}));
    for c in &mut subs {
        let msg = c.recv_json();
        assert_eq!(
            msg,
            json!({"op": "message", "channel": "news", "data": {"n": 1, "t": "x"}})
        );
        c.ping_pong("after");
    }
    let (_, body) = api(
        &node,
        "POST",
        "/v1/publish",
        &json!({"channel": "empty", "data": 1}),
    );
    assert_eq!(body, json!({"status": "published", "conns": 0}));
}

#[test]
fn send_and_presence_count_every_connection() {
    let node = node();
    let mut a = node.identified("bob");
    let mut b = node.identified("bob");
    let (status, body) = api(
        &node,
        "POST",
        "/v1/send",
        &json!({"user": "bob", "data": [1, "two"]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "delivered", "conns": 2}));
    for c in [&mut a, &mut b] {
        assert_eq!(c.recv_json(), json!({"op": "message", "data": [1, "two"]}));
        c.ping_pong("after");
    }
    let (_, body) = api(
        &node,
        "POST",
        "/v1/send",
        &json!({"user": "nobody", "data": null}),
    );
    assert_eq!(body, json!({"status": "stored", "conns": 0}));

    let (status, body) = api(&node, "GET", "/v1/presence/bob", &Value::Null);
    assert_eq!(status, 200);
    assert_eq!(body, json!({"user": "bob", "online": true, "conns": 2}));
    let (_, body) = api(&node, "GET", "/v1/presence/no%20body", &Value::Null);
    assert_eq!(
        body,
        json!({"user": "no body", "online": false, "conns": 0})
    );
}

#[test]
fn disconnect_closes_every_connection_of_the_user_with_4010() {
    let node = node();
    let mut a = node.identified("carol");
    let mut b = node.identified("carol");
    let mut other = node.identified("dave");
    let (status, body) = api(&node, "POST", "/v1/disconnect", &json!({"user": "carol"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"closed": 2}));
    a.expect_close(4010);
    b.expect_close(4010);
    other.ping_pong("still-here");
}

#[test]
fn close_sheds_exactly_the_requested_count_with_1001() {
    let node = node();
    let mut clients: Vec<Client> = (0..5).map(|i| node.identified(&format!("u{i}"))).collect();
    let (status, body) = api(&node, "POST", "/v1/close", &json!({"count": 3}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"closed": 3}));
    let mut closed = 0;
    for c in &mut clients {
        // A closed client sees 1001 first; an open one answers the ping.
        c.send_json(&json!({"op": "ping", "id": "p"}));
        match c.try_recv() {
            Ok(common::Incoming::Close(code)) => {
                assert_eq!(code, Some(1001));
                closed += 1;
            }
            Ok(common::Incoming::Json(v)) => assert_eq!(v["op"], "pong", "{v}"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(closed, 3);
}

#[test]
fn the_key_is_required_and_bad_requests_are_explained() {
    let node = node();
    let body = json!({"user": "bob", "data": 1}).to_string();
    let (status, _) = http_request(node.admin_addr, "POST", "/v1/send", &[], &body).unwrap();
    assert_eq!(status, 401);
    let (status, _) = http_request(
        node.admin_addr,
        "POST",
        "/v1/send",
        &[("Authorization", "Bearer wrong")],
        &body,
    )
    .unwrap();
    assert_eq!(status, 401);
    let (status, text) = http_request(node.admin_addr, "GET", "/v1/presence/bob", &[], "").unwrap();
    assert_eq!(status, 401, "{text}");

    let (status, body) = api(&node, "POST", "/v1/send", &json!({"user": "bob"}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("data"), "{body}");
    let (status, _) = api(
        &node,
        "POST",
        "/v1/publish",
        &json!({"channel": "", "data": 1}),
    );
    assert_eq!(status, 400);
    let (status, _) = api(&node, "GET", "/v1/send", &Value::Null);
    assert_eq!(status, 405);
    let (status, _) = api(&node, "POST", "/v1/nothing", &json!({}));
    assert_eq!(status, 404);
    // The operational endpoints stay open without the key.
    assert_eq!(node.http_get("/healthz").0, 200);
}

#[test]
fn every_path_in_the_openapi_file_exists_with_its_method() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml"))
        .expect("docs/openapi.yaml");
    let node = node();
    let mut path = None;
    let mut checked = 0;
    for line in spec.lines() {
        if let Some(p) = line.strip_prefix("  /v1/") {
            path = Some(format!("/v1/{}", p.trim_end_matches(':')).replace("{user}", "u"));
        } else if let Some(method) = line
            .trim_end()
            .strip_prefix("    ")
            .and_then(|m| m.strip_suffix(':'))
        {
            let (Some(p), "get" | "post") = (&path, method) else {
                continue;
            };
            if p == "/v1/drain" {
                continue; // would stop this node; tests/drain.rs covers it
            }
            let (status, body) = api(&node, &method.to_uppercase(), p, &json!({}));
            assert!(
                status != 404 && status != 405,
                "{method} {p} is documented but answers {status}: {body}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "paths checked");
}

/// What a backend does right after a client says it is ready or subscribed: the API call reaches it.
/// The user's entry and the channel's index live on owner shards other than the connection's; the
/// `ready` and `subscribed` acks go out only once those owners count the connection, so the call
/// (which the admin server hands straight to the owner) never overtakes them. Every round uses a new
/// user and channel, so each lands on a fresh pair of owners.
///
/// A client told out of band (here: the test) sends at once too; its message is handled on its own
/// shard, which for some rounds is the new user's owner, where it must not overtake the registration.
#[test]
fn right_after_ready_and_subscribed_the_api_reaches_the_connection() {
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .set_str("api.key", KEY)
            .env("GATEWAY_LIMITS_RATE_LIMIT_PER_SEC", "0"),
    );
    let mut sender = node.identified("sender");
    for i in 0..300 {
        let user = format!("fresh-{i}");
        let channel = format!("room-{i}");
        let mut c = node.identified(&user);
        let ack = sender.request(json!({"op": "send", "id": "d", "to": user, "data": i}));
        assert_eq!(
            ack,
            json!({"op": "ack", "id": "d", "status": "delivered", "conns": 1}),
            "round {i}"
        );
        let from = json!({"op": "message", "from": "sender", "data": i});
        assert_eq!(c.recv_json(), from, "round {i}");
        let (_, body) = api(&node, "POST", "/v1/send", &json!({"user": user, "data": i}));
        assert_eq!(
            body,
            json!({"status": "delivered", "conns": 1}),
            "round {i}"
        );
        assert_eq!(
            c.recv_json(),
            json!({"op": "message", "data": i}),
            "round {i}"
        );
        let ack = c.request(json!({"op": "subscribe", "id": "s", "channel": channel}));
        assert_eq!(ack["status"], "subscribed", "round {i}: {ack}");
        let (_, body) = api(
            &node,
            "POST",
            "/v1/publish",
            &json!({"channel": channel, "data": i}),
        );
        assert_eq!(
            body,
            json!({"status": "published", "conns": 1}),
            "round {i}"
        );
        assert_eq!(
            c.recv_json(),
            json!({"op": "message", "channel": channel, "data": i}),
            "round {i}"
        );
    }
}
