//! Abuse: invalid UTF-8. A text message that is not UTF-8 closes with 1007, whatever the defect
//! (overlong encodings, surrogates, code points past U+10FFFF, a sequence truncated at the end) and
//! however it is framed (one frame, split across fragments, interleaved with pings). A valid character
//! split across two fragments is fine. A close frame whose reason is not UTF-8 closes with 1007 too;
//! binary frames are not text, so bad bytes there are a `bad_request` (not JSON). Hundreds of such
//! connections leave the node's memory where it was. (tests/protocol.rs has the plain one-frame case.)

mod common;

use std::time::Duration;

use common::raw::{BINARY, CLOSE, CONT, FIN, PING, RawWs, TEXT, assert_rss_within, frame};
use common::{Node, NodeOpts};

/// Invalid sequences, each inside otherwise valid JSON text.
fn defects() -> Vec<(&'static str, Vec<u8>)> {
    let wrap = |bad: &[u8]| {
        let mut v = br#"{"op":"ping","id":""#.to_vec();
        v.extend_from_slice(bad);
        v.extend_from_slice(br#""}"#);
        v
    };
    vec![
        ("overlong '/' in 2 bytes", wrap(&[0xc0, 0xaf])),
        ("overlong '/' in 3 bytes", wrap(&[0xe0, 0x80, 0xaf])),
        ("overlong NUL in 4 bytes", wrap(&[0xf0, 0x80, 0x80, 0x80])),
        ("high surrogate U+D800", wrap(&[0xed, 0xa0, 0x80])),
        ("low surrogate U+DFFF", wrap(&[0xed, 0xbf, 0xbf])),
        ("past U+10FFFF", wrap(&[0xf4, 0x90, 0x80, 0x80])),
        ("lone continuation byte", wrap(&[0x80])),
        ("0xFE", wrap(&[0xfe])),
        (
            "truncated at the end",
            br#"{"op":"ping"} "#.iter().copied().chain([0xe2, 0x82]).collect(),
        ),
    ]
}

/// Sends `frames` on an identified connection and expects close 1007.
fn assert_1007(node: &Node, what: &str, frames: &[Vec<u8>]) {
    let mut ws = RawWs::connect(node.ws_addr);
    ws.identify("utf8");
    for f in frames {
        // The server may close before the last frames arrive.
        let _ = ws.send_raw(f);
    }
    let (code, reason, _) = ws.expect_close();
    assert_eq!(code, 1007, "{what}: got {code} ({reason:?})");
    assert!(
        ws.closed_within(Duration::from_secs(10)),
        "{what}: TCP still open after the 1007"
    );
}

#[test]
fn invalid_utf8_closes_with_1007_however_it_is_framed() {
    let node = Node::start(NodeOpts::new());
    let mut expected = 0.0;
    for (what, text) in defects() {
        // One frame.
        assert_1007(&node, what, &[frame(FIN | TEXT, &text)]);
        // Split across three fragments, with a ping in between; the defect may straddle a boundary.
        let (a, rest) = text.split_at(text.len() / 3);
        let (b, c) = rest.split_at(rest.len() - 2);
        assert_1007(
            &node,
            &format!("{what}, fragmented"),
            &[
                frame(TEXT, a),
                frame(FIN | PING, b"p"),
                frame(CONT, b),
                frame(FIN | CONT, c),
            ],
        );
        expected += 2.0;
    }
    // A valid 3-byte character (U+20AC) split 1 + 2 across fragments is fine.
    let mut ws = RawWs::connect(node.ws_addr);
    ws.identify("euro");
    let text = r#"{"op":"ping","id":"€"}"#.as_bytes();
    let cut = text.iter().position(|&b| b == 0xe2).expect("the euro sign") + 1;
    ws.send_frame(TEXT, &text[..cut]).expect("first fragment");
    ws.send_frame(FIN | CONT, &text[cut..])
        .expect("last fragment");
    let pong = ws.recv_json();
    assert_eq!(pong["id"], "€", "{pong}");

    // Bad bytes in a binary frame are not a UTF-8 matter: the JSON is malformed.
    let (_, bad) = &defects()[0];
    let reply = {
        ws.send_frame(FIN | BINARY, bad).expect("binary");
        ws.recv_json()
    };
    assert_eq!(reply["code"], "bad_request", "{reply}");
    ws.ping_pong("binary-survived");

    // A close frame with a reason that is not UTF-8.
    let mut close_payload = 1000u16.to_be_bytes().to_vec();
    close_payload.extend_from_slice(&[b'b', b'y', 0xff, b'e']);
    assert_1007(&node, "close reason", &[frame(FIN | CLOSE, &close_payload)]);
    let mut close_payload = 1000u16.to_be_bytes().to_vec();
    close_payload.extend_from_slice(&[0xed, 0xa0, 0x80]);
    assert_1007(
        &node,
        "close reason with a surrogate",
        &[frame(FIN | CLOSE, &close_payload)],
    );
    expected += 2.0;

    let counted = node.wait_metric(
        "gateway_connections_closed_total",
        &[("reason", "invalid_utf8")],
        expected,
        Duration::from_secs(5),
    );
    assert_eq!(counted, expected, "invalid_utf8 closes counted");
    ws.ping_pong("still-open");
}

#[test]
fn hundreds_of_invalid_messages_cost_no_memory() {
    let node = Node::start(NodeOpts::new().shards(2));
    let defects = defects();
    let warm = frame(FIN | TEXT, &defects[0].1);
    assert_1007(&node, "warm-up", &[warm]);
    let baseline = node.rss_bytes();
    for i in 0..300 {
        let (what, text) = &defects[i % defects.len()];
        // Half of them in 1,000-byte fragments of a 60 KiB message whose defect is at the very end.
        if i % 2 == 0 {
            assert_1007(&node, what, &[frame(FIN | TEXT, text)]);
        } else {
            let mut long = vec![b' '; 60 * 1024];
            long.extend_from_slice(text);
            let chunks: Vec<&[u8]> = long.chunks(1000).collect();
            let frames: Vec<Vec<u8>> = chunks
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let op = if j == 0 { TEXT } else { CONT };
                    let fin = if j + 1 == chunks.len() { FIN } else { 0 };
                    frame(fin | op, c)
                })
                .collect();
            assert_1007(&node, what, &frames);
        }
    }
    let after = node.rss_bytes();
    assert_rss_within("utf8, after 300 invalid messages", baseline, after, 16);
}
