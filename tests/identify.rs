//! Identify flow: dev-mode `ready` frame, ops before identify, double identify, identify timeout, and JWT
//! mode with HS256 and RS256 tokens (valid, expired, wrong key, `user` field refused).

mod common;

use common::{Node, NodeOpts, assert_error, fixture, hs256_token, rs256_token};
use serde_json::json;

const SECRET: &str = "integration-test-secret";

#[test]
fn dev_mode_ready_frame_has_all_fields() {
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .set("heartbeat.interval_ms", 20000)
            .set("heartbeat.timeout_ms", 40000),
    );
    let mut c = node.client();
    let ready = c.request(json!({"op": "identify", "id": "i1", "user": "alice"}));
    assert_eq!(ready["op"], "ready", "{ready}");
    assert_eq!(ready["id"], "i1", "{ready}");
    assert_eq!(ready["user"], "alice", "{ready}");
    assert_eq!(ready["node"], node.node_id.as_str(), "{ready}");
    assert_eq!(ready["heartbeat_ms"], 20000, "{ready}");
    let shard = ready["shard"].as_u64().expect("shard is an integer");
    assert!(
        shard < 2,
        "shard {shard} out of range for --shards 2: {ready}"
    );
    let session = ready["session"].as_str().expect("session is a string");
    assert!(
        !session.is_empty() && session.chars().all(|c| c.is_ascii_hexdigit()),
        "session must be a non-empty hex id: {ready}"
    );

    // A second connection of the same user gets a different session.
    let mut c2 = node.client();
    let ready2 = c2.identify("alice");
    assert_ne!(ready2["session"], ready["session"], "sessions must differ");
    c2.ping_pong("after-identify");
}

#[test]
fn op_before_identify_is_not_identified_and_connection_stays_open() {
    let node = Node::start(NodeOpts::new());
    let mut c = node.client();
    let err = c.request(json!({"op": "ping", "id": "early"}));
    assert_error(&err, "not_identified", Some("early"));
    let err = c.request(json!({"op": "send", "id": "s0", "to": "bob", "data": 1}));
    assert_error(&err, "not_identified", Some("s0"));
    let ready = c.identify("carol");
    assert_eq!(ready["user"], "carol");
    c.ping_pong("later");
}

#[test]
fn identify_twice_is_bad_request() {
    let node = Node::start(NodeOpts::new());
    let mut c = node.identified("dave");
    let err = c.request(json!({"op": "identify", "id": "again", "user": "erin"}));
    assert_error(&err, "bad_request", Some("again"));
    // Still identified as dave: a message to dave reaches this connection.
    let mut other = node.identified("frank");
    let ack = other.request(json!({"op": "send", "id": "m1", "to": "dave", "data": "hi"}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "m1", "status": "delivered", "conns": 1})
    );
    let msg = c.recv_json();
    assert_eq!(msg, json!({"op": "message", "from": "frank", "data": "hi"}));
}

#[test]
fn identify_timeout_closes_with_4001() {
    let node = Node::start(NodeOpts::new().set("auth.timeout_ms", 300));
    let mut idle = node.client();
    let mut quick = node.identified("quick");
    idle.expect_close(4001);
    // The identified connection is not affected by the identify timeout.
    quick.ping_pong("still-here");
}

fn hs256_node() -> Node {
    Node::start(NodeOpts::new().set_str("auth.jwt_hs256_secret", SECRET))
}

#[test]
fn jwt_hs256_valid_token_is_ready_with_sub() {
    let node = hs256_node();
    let mut c = node.client();
    let token = hs256_token(SECRET, "alice", 3600);
    let ready = c.request(json!({"op": "identify", "id": "j1", "token": token}));
    assert_eq!(ready["op"], "ready", "{ready}");
    assert_eq!(ready["id"], "j1", "{ready}");
    assert_eq!(ready["user"], "alice", "{ready}");
    assert_eq!(ready["node"], node.node_id.as_str(), "{ready}");
    c.ping_pong("p");
}

#[test]
fn jwt_hs256_expired_token_is_unauthorized_and_1008() {
    let node = hs256_node();
    let mut c = node.client();
    let token = hs256_token(SECRET, "alice", -3600);
    let err = c.request(json!({"op": "identify", "id": "j2", "token": token}));
    assert_error(&err, "unauthorized", Some("j2"));
    c.expect_close(1008);
}

#[test]
fn jwt_hs256_wrong_secret_is_unauthorized_and_1008() {
    let node = hs256_node();
    let mut c = node.client();
    let token = hs256_token("not-the-secret", "alice", 3600);
    let err = c.request(json!({"op": "identify", "id": "j3", "token": token}));
    assert_error(&err, "unauthorized", Some("j3"));
    c.expect_close(1008);
}

#[test]
fn jwt_mode_refuses_user_field() {
    let node = hs256_node();
    let mut c = node.client();
    let err = c.request(json!({"op": "identify", "id": "j4", "user": "alice"}));
    assert_error(&err, "unauthorized", Some("j4"));
    c.expect_close(1008);
}

#[test]
fn jwt_mode_garbage_token_is_unauthorized() {
    let node = hs256_node();
    let mut c = node.client();
    let err = c.request(json!({"op": "identify", "token": "not.a.jwt"}));
    assert_error(&err, "unauthorized", None);
    c.expect_close(1008);
}

fn rs256_node() -> Node {
    let public = fixture("jwt_rs256_public.pem");
    let path = public.to_str().expect("utf-8 fixture path");
    Node::start(NodeOpts::new().set_str("auth.jwt_rs256_public_key_file", path))
}

#[test]
fn jwt_rs256_valid_token_is_ready() {
    let node = rs256_node();
    let mut c = node.client();
    let token = rs256_token(&fixture("jwt_rs256_private.pem"), "rsa-user", 3600);
    let ready = c.request(json!({"op": "identify", "id": "r1", "token": token}));
    assert_eq!(ready["op"], "ready", "{ready}");
    assert_eq!(ready["user"], "rsa-user", "{ready}");
    c.ping_pong("p");
}

#[test]
fn jwt_rs256_other_key_is_unauthorized_and_1008() {
    let node = rs256_node();
    let mut c = node.client();
    let token = rs256_token(&fixture("jwt_rs256_other_private.pem"), "rsa-user", 3600);
    let err = c.request(json!({"op": "identify", "id": "r2", "token": token}));
    assert_error(&err, "unauthorized", Some("r2"));
    c.expect_close(1008);
}

#[test]
fn jwt_rs256_node_refuses_hs256_token() {
    let node = rs256_node();
    let mut c = node.client();
    let token = hs256_token(SECRET, "alice", 3600);
    let err = c.request(json!({"op": "identify", "token": token}));
    assert_error(&err, "unauthorized", None);
    c.expect_close(1008);
}
