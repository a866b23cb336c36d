//! Admission limits from the client's side: `limits.max_connections_per_user` (the N+1th identify of
//! a user on a node gets `too_many_connections` and close 1008, counted across shards) and
//! `limits.max_connects_per_sec` (past the rate the upgrade is answered 503 with `Retry-After`,
//! before any WebSocket exists). Real node, real sockets.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use common::{Client, IO_TIMEOUT, Node, NodeOpts, assert_error};
use serde_json::json;

#[test]
fn the_connection_past_the_per_user_cap_is_refused_across_shards() {
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .set("limits.max_connections_per_user", 2),
    );
    // Several connections each, so both shards hold some (the kernel spreads them).
    let mut first = node.identified("alice");
    let _second = node.identified("alice");
    for _ in 0..3 {
        let mut third = node.client();
        let reply = third.request(json!({"op": "identify", "id": "i", "user": "alice"}));
        assert_error(&reply, "too_many_connections", Some("i"));
        third.expect_close(1008);
    }
    // Other users are not affected.
    let _bob = node.identified("bob");
    let _bob2 = node.identified("bob");
    assert_eq!(node.metric_sum("gateway_user_cap_refused_total", &[]), 3.0);
    // A slot freed is a slot to take (once the owner shard has counted the close).
    first.ping_pong("p");
    first.close();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = node.client();
        let reply = again.request(json!({"op": "identify", "id": "i", "user": "alice"}));
        if reply["op"] == "ready" {
            break;
        }
        assert_error(&reply, "too_many_connections", Some("i"));
        assert!(Instant::now() < deadline, "the freed slot never came back");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sends an upgrade request on a raw socket and returns the response head.
fn upgrade_head(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("write upgrade");
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "reading the answer: {e} (got {:?})",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn connects_past_the_rate_get_503_before_the_upgrade() {
    let rate = 5;
    let node = Node::start(NodeOpts::new().set("limits.max_connects_per_sec", rate));
    let (mut upgraded, mut refused) = (0, 0);
    for _ in 0..20 {
        let head = upgrade_head(node.ws_addr);
        if head.starts_with("HTTP/1.1 101") {
            upgraded += 1;
        } else {
            assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
            assert!(head.contains("\r\nRetry-After: 1\r\n"), "{head}");
            refused += 1;
        }
    }
    // A full bucket of `rate`, plus what refills while the loop runs.
    assert!((1..=rate + 2).contains(&upgraded), "{upgraded} upgraded");
    assert!(refused >= 20 - rate - 2, "{refused} refused");
    assert_eq!(
        node.metric_sum("gateway_connect_rate_limited_total", &[]),
        refused as f64
    );
    // The refused held no slot: the node counts only the upgraded ones, and a client that waits as
    // told gets in.
    thread::sleep(Duration::from_millis(1_100));
    let mut c = Client::try_connect(node.ws_addr, "/ws", IO_TIMEOUT).expect("after Retry-After");
    c.identify("patient");
}
