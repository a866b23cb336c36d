//! Abuse: fragmented-message floods. Thousands of tiny continuation frames close with 1009 ("too many
//! fragments") at `websocket.max_fragments`; a message started and never finished holds at most
//! `websocket.max_message_bytes` and is freed with its connection; control frames between fragments are
//! answered and the message still arrives; a new data frame while a message is unfinished is a protocol
//! error (1002). The node's memory stays bounded throughout.

mod common;

use std::time::Duration;

use common::raw::{BINARY, CONT, FIN, PING, PONG, RawWs, TEXT, frame, mib};
use common::{Node, NodeOpts};

const PING_JSON: &[u8] = br#"{"op":"ping","id":"frag"}"#;

/// `PING_JSON` as a first frame of its first byte, `empties` empty continuations, and the rest as the
/// final frame: `empties + 2` frames in all.
fn message_with_empty_fragments(empties: usize) -> Vec<u8> {
    let mut out = frame(TEXT, &PING_JSON[..1]);
    for _ in 0..empties {
        out.extend(frame(CONT, b""));
    }
    out.extend(frame(FIN | CONT, &PING_JSON[1..]));
    out
}

#[test]
fn a_flood_of_tiny_fragments_closes_with_1009() {
    let node = Node::start(NodeOpts::new().set("websocket.max_fragments", 64));
    let mut ws = RawWs::connect(node.ws_addr);
    ws.identify("frag");
    // Exactly at the limit: delivered.
    ws.send_raw(&message_with_empty_fragments(62))
        .expect("send");
    assert_eq!(ws.recv_json()["id"], "frag");
    // Five thousand one-byte and empty continuations: closed at the 65th frame.
    let mut flood = frame(TEXT, b"{");
    for i in 0..5000 {
        flood.extend(frame(CONT, if i % 2 == 0 { b"" } else { b" " }));
    }
    let _ = ws.send_raw(&flood);
    assert_eq!(ws.expect_close_code(1009), "too many fragments");
    assert!(ws.closed_within(Duration::from_secs(10)));
    drop(ws); // the server counts the close once the client is gone
    let counted = node.wait_metric(
        "gateway_connections_closed_total",
        &[("reason", "too_many_fragments")],
        1.0,
        Duration::from_secs(5),
    );
    assert_eq!(counted, 1.0);

    // The default (1024) holds too.
    let node = Node::start(NodeOpts::new());
    let mut ws = RawWs::connect(node.ws_addr);
    ws.identify("frag");
    ws.send_raw(&message_with_empty_fragments(1022))
        .expect("send");
    assert_eq!(ws.recv_json()["id"], "frag");
    let _ = ws.send_raw(&message_with_empty_fragments(5000));
    assert_eq!(ws.expect_close_code(1009), "too many fragments");
}

#[test]
fn control_frames_between_fragments_are_answered_and_the_message_arrives() {
    let node = Node::start(NodeOpts::new());
    let mut ws = RawWs::connect(node.ws_addr);
    ws.identify("frag");
    let mut input = Vec::new();
    for (i, byte) in PING_JSON.iter().enumerate() {
        let op = if i == 0 { TEXT } else { CONT };
        let fin = if i + 1 == PING_JSON.len() { FIN } else { 0 };
        input.extend(frame(fin | op, &[*byte]));
        if i % 5 == 0 {
            input.extend(frame(FIN | PONG, b"")); // pongs are free
        }
        if i == 10 {
            input.extend(frame(FIN | PING, b"mid"));
        }
    }
    ws.send_raw(&input).expect("send");
    let pong = ws.read_frame().expect("the pong");
    assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, &b"mid"[..]));
    assert_eq!(ws.recv_json()["id"], "frag");
    ws.ping_pong("after");
}

#[test]
fn a_new_message_inside_an_unfinished_one_is_a_protocol_error() {
    let node = Node::start(NodeOpts::new());
    for second in [FIN | TEXT, TEXT, FIN | BINARY] {
        let mut ws = RawWs::connect(node.ws_addr);
        ws.identify("frag");
        ws.send_frame(TEXT, b"{\"op\":").expect("first fragment");
        ws.send_frame(second, b"{}").expect("a new data frame");
        ws.expect_close_code(1002);
        assert!(ws.closed_within(Duration::from_secs(10)));
    }
}

/// An identified connection that has sent all but the last KiB of a `max` byte message in 1 KiB
/// fragments and stops there; a ping answered after them shows the server has taken them all.
fn unfinished(node: &Node, user: &str, max: usize) -> RawWs {
    let mut ws = RawWs::connect(node.ws_addr);
    ws.identify(user);
    let chunk = vec![b' '; 1024];
    let mut input = frame(TEXT, b"{");
    for _ in 0..max / 1024 - 1 {
        input.extend(frame(CONT, &chunk));
    }
    input.extend(frame(FIN | PING, b"x"));
    ws.send_raw(&input).expect("send");
    let f = ws.read_frame().expect("pong");
    assert_eq!(f.opcode, PONG, "{user}");
    ws
}

#[test]
fn unfinished_messages_are_bounded_and_freed_on_close() {
    const CONNS: usize = 200;
    const MAX_MESSAGE: usize = 64 * 1024;
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .set("websocket.max_message_bytes", MAX_MESSAGE),
    );
    let baseline = node.rss_bytes();
    let mut open: Vec<RawWs> = (0..CONNS)
        .map(|i| unfinished(&node, &format!("u{i}"), MAX_MESSAGE))
        .collect();
    let loaded = node.rss_bytes();
    // Two more KiB on one of them go past the limit: 1009.
    let mut over = open.pop().expect("one");
    let _ = over.send_frame(CONT, &[b' '; 1024]);
    let _ = over.send_frame(FIN | CONT, &[b' '; 1024]);
    assert_eq!(over.expect_close_code(1009), "message too big");

    for ws in open.drain(..) {
        ws.close();
    }
    drop(over);
    let gone = node.wait_metric(
        "gateway_connections_open",
        &[],
        0.0,
        Duration::from_secs(10),
    );
    assert_eq!(gone, 0.0);
    let after = node.rss_bytes();
    eprintln!(
        "fragments: RSS baseline {}, {CONNS} unfinished 63 KiB messages {} ({} KiB/conn), after close {}",
        mib(baseline),
        mib(loaded),
        loaded.saturating_sub(baseline) / CONNS as u64 / 1024,
        mib(after)
    );
    // Each holds at most max_message_bytes (plus allocator rounding and the decoder's frame buffer).
    assert!(
        loaded <= baseline + (CONNS * 3 * MAX_MESSAGE) as u64,
        "{CONNS} unfinished messages took {} over {}",
        mib(loaded - baseline),
        mib(baseline)
    );
    // Freed on close: a second round reuses that memory instead of adding to it.
    let second: Vec<RawWs> = (0..CONNS)
        .map(|i| unfinished(&node, &format!("v{i}"), MAX_MESSAGE))
        .collect();
    let loaded_again = node.rss_bytes();
    eprintln!("fragments: second round {}", mib(loaded_again));
    assert!(
        loaded_again <= loaded + 8 * 1024 * 1024,
        "the second round grew memory: {} then {}",
        mib(loaded),
        mib(loaded_again)
    );
    drop(second);
}
