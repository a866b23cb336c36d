//! Protocol v1 edge cases on one connection: malformed JSON, unknown ops, binary JSON frames, invalid
//! UTF-8 in a text frame (close 1007) and the upgrade path rules (`/`, `/ws?query`, 404 elsewhere).

mod common;

use std::time::Duration;

use common::{Client, IO_TIMEOUT, Node, NodeOpts, assert_error};
use serde_json::json;
use tungstenite::Message;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

#[test]
fn malformed_json_is_bad_request_and_connection_stays_open() {
    let node = Node::start(NodeOpts::new());
    let mut c = node.identified("alice");
    c.send_text("{not json");
    let err = c.recv_json();
    assert_error(&err, "bad_request", None);
    c.ping_pong("after-malformed");

    // Valid JSON that is not an object with an op is a bad request too.
    c.send_text("[1,2,3]");
    assert_error(&c.recv_json(), "bad_request", None);
    c.ping_pong("after-array");

    // Before identify the same rules apply: bad_request, connection open.
    let mut fresh = node.client();
    fresh.send_text("{\"op\":");
    assert_error(&fresh.recv_json(), "bad_request", None);
    fresh.identify("bob");
    fresh.ping_pong("fresh");
}

#[test]
fn unknown_op_is_unknown_op_with_id() {
    let node = Node::start(NodeOpts::new());
    let mut c = node.identified("alice");
    let err = c.request(json!({"op": "dance", "id": "u1"}));
    assert_error(&err, "unknown_op", Some("u1"));
    c.ping_pong("after-unknown");
}

#[test]
fn binary_frame_holding_json_is_accepted() {
    let node = Node::start(NodeOpts::new());
    let mut c = node.identified("alice");
    let body = json!({"op": "ping", "id": "bin"}).to_string().into_bytes();
    c.try_send(Message::binary(body)).expect("send binary");
    assert_eq!(c.recv_json(), json!({"op": "pong", "id": "bin"}));
}

#[test]
fn invalid_utf8_text_frame_closes_with_1007() {
    let node = Node::start(NodeOpts::new());
    let mut c = node.identified("alice");
    let frame = Frame::message(
        vec![b'{', 0xff, 0xfe, 0xfd, b'}'],
        OpCode::Data(Data::Text),
        true,
    );
    c.try_send(Message::Frame(frame))
        .expect("send raw text frame");
    c.expect_close(1007);
}

#[test]
fn upgrade_paths() {
    let node = Node::start(NodeOpts::new());
    let mut ws = Client::try_connect(node.ws_addr, "/ws?v=1&x=y", IO_TIMEOUT)
        .expect("upgrade on /ws with a query string");
    ws.identify("path-user");
    ws.ping_pong("p");

    match Client::try_connect(node.ws_addr, "/elsewhere", Duration::from_secs(5)) {
        Ok(_) => panic!("upgrade on /elsewhere must fail with 404"),
        Err(e) => assert!(e.contains("404"), "expected HTTP 404, got: {e}"),
    }
}
