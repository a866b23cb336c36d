//! Token lifetime in JWT mode: a connection whose token's `exp` passes is closed with 4011 ("token
//! expired"), unless it sent `refresh` with a valid token for the same user first; a refresh that is
//! refused leaves the current token (and its expiry) in place. Real node, tokens signed here.

mod common;

use std::{thread, time::Duration};

use common::{Client, Node, NodeOpts, assert_error, hs256_claims, hs256_token};
use serde_json::json;

const SECRET: &str = "lifetime-test-secret";

fn node() -> Node {
    Node::start(
        NodeOpts::new()
            .set_str("auth.jwt_hs256_secret", SECRET)
            .set(
                "channels.namespaces",
                r#"[{ pattern = "room:*", subscribe = "grant" }]"#,
            ),
    )
}

/// Identifies `user` with a token expiring in `exp` seconds carrying `grants`.
fn connect(node: &Node, user: &str, exp: i64, grants: serde_json::Value) -> Client {
    let mut c = node.client();
    c.set_read_timeout(Duration::from_secs(10));
    let token = hs256_claims(SECRET, user, exp, grants);
    let ready = c.request(json!({"op": "identify", "id": "i", "token": token}));
    assert_eq!(ready["op"], "ready", "{ready}");
    c
}

#[test]
fn no_refresh_closes_with_4011_at_expiry() {
    let node = node();
    let mut c = connect(&node, "alice", 2, json!({}));
    c.ping_pong("before");
    let info = c.expect_close(4011);
    assert!(info.data.is_empty(), "{:?}", info.data);
    assert_eq!(c.close_reason.as_deref(), Some("token expired"));
    // The server counts the close once the client's answer (or its EOF) ends it.
    drop(c);
    let closed = node.wait_metric(
        "gateway_connections_closed_total",
        &[("reason", "token_expired")],
        1.0,
        Duration::from_secs(10),
    );
    assert_eq!(closed, 1.0);
}

#[test]
fn refresh_before_expiry_keeps_the_connection_and_replaces_grants() {
    let node = node();
    let mut c = connect(&node, "alice", 2, json!({}));
    let forbidden = c.request(json!({"op": "subscribe", "id": "s0", "channel": "room:1"}));
    assert_error(&forbidden, "forbidden", Some("s0"));
    let fresh = hs256_claims(SECRET, "alice", 60, json!({"channels": ["room:*"]}));
    let ack = c.request(json!({"op": "refresh", "id": "r", "token": fresh}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "r", "status": "refreshed"}),
        "{ack}"
    );
    // The new token's grants apply at once.
    let sub = c.request(json!({"op": "subscribe", "id": "s1", "channel": "room:1"}));
    assert_eq!(sub["status"], "subscribed", "{sub}");
    // Past the first token's expiry the connection is still open.
    thread::sleep(Duration::from_millis(3_500));
    c.ping_pong("after");
}

#[test]
fn a_refused_refresh_keeps_the_old_expiry() {
    let node = node();
    let mut c = connect(&node, "alice", 2, json!({}));
    for (id, token) in [
        ("other-user", hs256_token(SECRET, "bob", 60)),
        ("expired", hs256_token(SECRET, "alice", -5)),
        ("forged", hs256_token("not-the-secret", "alice", 60)),
        (
            "subscription-token",
            hs256_claims(SECRET, "alice", 60, json!({"channel": "room:1"})),
        ),
    ] {
        let reply = c.request(json!({"op": "refresh", "id": id, "token": token}));
        assert_error(&reply, "unauthorized", Some(id));
    }
    let reply = c.request(json!({"op": "refresh", "id": "none"}));
    assert_error(&reply, "bad_request", Some("none"));
    c.ping_pong("still-open");
    c.expect_close(4011);
}

#[test]
fn refresh_in_dev_mode_is_a_bad_request() {
    let node = Node::start(NodeOpts::new());
    let mut c = node.identified("alice");
    let token = hs256_token(SECRET, "alice", 60);
    let reply = c.request(json!({"op": "refresh", "id": "r", "token": token}));
    assert_error(&reply, "bad_request", Some("r"));
    c.ping_pong("open");
}
