//! Abuse: frame headers announcing absurd lengths. 2^62 and 2^63 - 1 bytes are well-formed lengths over
//! `websocket.max_frame_bytes`: close 1009 on the header alone, with no payload sent and nothing
//! allocated for it. A 64-bit length with its most significant bit set, or a length not in its shortest
//! encoding, breaks RFC 6455 §5.2: close 1002. Hundreds of such connections leave the node's memory
//! where it was.

mod common;

use std::thread;
use std::time::Duration;

use common::raw::{BINARY, FIN, RawWs, TEXT, assert_rss_within, header_u64};
use common::{Node, NodeOpts};

/// A masked header with a 16-bit length field holding `len` (minimal or not) and no payload.
fn header_u16(first: u8, len: u16) -> Vec<u8> {
    let mut out = vec![first, 0x80 | 126];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[1, 2, 3, 4]);
    out
}

/// The headers under test with the close code each must get.
fn cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    vec![
        ("2^62 bytes", header_u64(FIN | BINARY, 1 << 62), 1009),
        (
            "2^63 - 1 bytes",
            header_u64(FIN | TEXT, i64::MAX as u64),
            1009,
        ),
        (
            "just over the limit",
            header_u64(FIN | BINARY, 65_537),
            1009,
        ),
        ("2^63 (MSB set)", header_u64(FIN | BINARY, 1 << 63), 1002),
        ("2^64 - 1 (MSB set)", header_u64(FIN | TEXT, u64::MAX), 1002),
        ("5 bytes in 64 bits", header_u64(FIN | TEXT, 5), 1002),
        ("5 bytes in 16 bits", header_u16(FIN | TEXT, 5), 1002),
        (
            "65535 bytes in 64 bits",
            header_u64(FIN | BINARY, 65_535),
            1002,
        ),
    ]
}

/// Sends `header` on an identified connection and checks the close code and that TCP is closed next.
fn assert_closed_by_header(node: &Node, what: &str, header: &[u8], code: u16) {
    let mut ws = RawWs::connect(node.ws_addr);
    ws.identify("len");
    ws.send_raw(header).expect("send the header");
    let (got, reason, before) = ws.expect_close();
    assert_eq!(
        got, code,
        "{what}: expected close {code}, got {got} ({reason:?}) after {before} frames"
    );
    assert!(
        ws.closed_within(Duration::from_secs(10)),
        "{what}: TCP still open after the close frame"
    );
}

#[test]
fn absurd_lengths_get_their_close_code_from_the_header_alone() {
    let node = Node::start(NodeOpts::new());
    for (what, header, code) in cases() {
        assert_closed_by_header(&node, what, &header, code);
    }
    // Each close is counted once its client has gone, which the server sees a moment later.
    let counted = |reason: &str, want: f64| {
        node.wait_metric(
            "gateway_connections_closed_total",
            &[("reason", reason)],
            want,
            Duration::from_secs(5),
        )
    };
    let too_big = counted("too_big", 3.0);
    let protocol = counted("protocol_error", 5.0);
    assert_eq!((too_big, protocol), (3.0, 5.0), "closes by reason");
    // The node is fine.
    let mut c = node.identified("after");
    c.ping_pong("alive");
}

#[test]
fn hundreds_of_huge_headers_cost_no_memory() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 60;
    let node = Node::start(NodeOpts::new().shards(2));
    // Warm up: one round of every case, so allocator and table growth are in the baseline.
    for (what, header, code) in cases() {
        assert_closed_by_header(&node, what, &header, code);
    }
    let baseline = node.rss_bytes();
    thread::scope(|s| {
        for t in 0..THREADS {
            let node = &node;
            s.spawn(move || {
                let cases = cases();
                for i in 0..PER_THREAD {
                    let (what, header, code) = &cases[(t + i) % cases.len()];
                    assert_closed_by_header(node, what, header, *code);
                }
            });
        }
    });
    let after = node.rss_bytes();
    // Allocating even one announced payload would be at least 64 KiB per connection (and 2^62 would
    // abort the process); the bound is far below THREADS × PER_THREAD × 64 KiB = 30 MiB.
    assert_rss_within(
        &format!(
            "frame length, after {} connections announcing up to 2^64 - 1 bytes",
            THREADS * PER_THREAD
        ),
        baseline,
        after,
        8,
    );
    let mut c = node.identified("after");
    c.ping_pong("alive");
}
