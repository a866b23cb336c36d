//! Protocol errors end with a close FRAME carrying the right code (docs/PROTOCOL.md section 2), then EOF:
//! 1002 for RFC 6455 violations, 1007 for text that is not UTF-8, 1009 for a frame or message over the
//! limits. Every case runs on a raw socket, so the test sees exactly the frames the server sends, in both
//! `gateway serve` and `gateway echo` (which share the decoder, but not what happens to a message).
//!
//! Covered elsewhere, not repeated here (protocol mode): an unfragmented invalid UTF-8 text frame
//! (`tests/protocol.rs`, `invalid_utf8_text_frame_closes_with_1007`), a fragmented message over
//! `max_message_bytes` (`tests/limits.rs`, `fragmented_message_over_max_message_bytes_closes_with_1009`)
//! and the EOF after the close frame without a close reply (`tests/close_handshake.rs`).

mod common;

use common::{Node, NodeOpts, OP_CLOSE, RawWs, ServerFrame, client_frame};

/// Opcode of a pong frame.
const OP_PONG: u8 = 0xA;
/// Opcode of a text frame.
const OP_TEXT: u8 = 0x1;

/// One node per mode: `serve` and `echo`, with small limits for the 1009 cases.
fn nodes() -> [(&'static str, Node); 2] {
    let opts = NodeOpts::new()
        .set("websocket.max_frame_bytes", 1024)
        .set("websocket.max_message_bytes", 4096);
    [
        ("serve", Node::start(opts.clone())),
        ("echo", Node::start(opts.echo())),
    ]
}

/// Sends a ping, then `bytes`, on a fresh connection; returns what the server sent after the pong. The
/// pong shows the frames before the bad one were handled.
fn after_ping(node: &Node, bytes: &[u8]) -> Vec<ServerFrame> {
    let mut ws = RawWs::connect(node.ws_addr);
    let mut input = client_frame(0x89, b"before");
    input.extend_from_slice(bytes);
    ws.send(&input);
    let mut frames = ws.frames_until_eof();
    assert!(
        !frames.is_empty() && frames[0].opcode == OP_PONG && frames[0].payload == b"before",
        "the ping before the bad frame was not answered first: {frames:?}"
    );
    frames.remove(0);
    frames
}

/// Asserts that `frames` is exactly one close frame with `code`.
fn assert_only_close(frames: &[ServerFrame], code: u16, what: &str) {
    assert_eq!(
        frames.len(),
        1,
        "{what}: want one close frame, got {frames:?}"
    );
    assert_eq!(frames[0].opcode, OP_CLOSE, "{what}: not a close frame");
    assert_eq!(frames[0].close_code(), Some(code), "{what}: {frames:?}");
}

#[test]
fn rfc_6455_violations_close_with_1002() {
    let mut text_in_fragments = client_frame(0x01, b"a");
    text_in_fragments.extend(client_frame(0x81, b"b"));
    let cases: [(&str, Vec<u8>); 12] = [
        ("unmasked client frame", vec![0x81, 0x02, b'h', b'i']),
        ("RSV1 set", client_frame(0xC1, b"x")),
        ("RSV2 set", client_frame(0xA1, b"x")),
        ("RSV3 set", client_frame(0x91, b"x")),
        ("reserved data opcode 0x3", client_frame(0x83, b"x")),
        ("reserved control opcode 0xB", client_frame(0x8B, b"x")),
        ("fragmented ping", client_frame(0x09, b"x")),
        ("ping of 126 bytes", client_frame(0x89, &[b'p'; 126])),
        ("continuation without a start", client_frame(0x80, b"x")),
        ("new text frame inside a fragmented one", text_in_fragments),
        ("close payload of one byte", client_frame(0x88, &[0x03])),
        // 1005 is reserved for "no code" and must never be sent.
        (
            "close code 1005",
            client_frame(0x88, &1005u16.to_be_bytes()),
        ),
    ];
    for (mode, node) in nodes() {
        for (what, bytes) in &cases {
            let frames = after_ping(&node, bytes);
            assert_only_close(&frames, 1002, &format!("{mode}: {what}"));
        }
    }
}

#[test]
fn invalid_utf8_closes_with_1007() {
    // "caf" then the first byte of "é" (valid so far), then a byte that cannot continue it. The last
    // fragment is never sent: the decoder checks text fragment by fragment, so the close comes at once.
    let mut split_bad = client_frame(0x01, b"caf\xc3");
    split_bad.extend(client_frame(0x00, b"\xff"));
    let mut bad_last = client_frame(0x01, b"valid ");
    bad_last.extend(client_frame(0x80, b"then \xed\xa0\x80")); // an encoded surrogate
    let cases = [
        ("invalid byte in a middle fragment", split_bad),
        ("surrogate in the last fragment", bad_last),
        ("close reason", client_frame(0x88, b"\x03\xe8bye \xff")),
    ];
    for (mode, node) in nodes() {
        for (what, bytes) in &cases {
            let frames = after_ping(&node, bytes);
            assert_only_close(&frames, 1007, &format!("{mode}: {what}"));
        }
    }
}

#[test]
fn echo_mode_invalid_utf8_text_frame_closes_with_1007() {
    let node = Node::start(NodeOpts::new().echo());
    let frames = after_ping(&node, &client_frame(0x81, b"{\xff\xfe}"));
    assert_only_close(&frames, 1007, "echo: invalid UTF-8 text frame");
}

#[test]
fn echo_mode_text_split_inside_a_character_is_echoed_whole() {
    let node = Node::start(NodeOpts::new().echo());
    let mut ws = RawWs::connect(node.ws_addr);
    let text = "h\u{e9}llo \u{1f600}!".as_bytes();
    // Cut inside "é" and inside the four bytes of the emoji.
    let mut input = client_frame(0x01, &text[..2]);
    input.extend(client_frame(0x00, &text[2..9]));
    input.extend(client_frame(0x80, &text[9..]));
    input.extend(client_frame(0x88, &1000u16.to_be_bytes()));
    ws.send(&input);
    let frames = ws.frames_until_eof();
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(frames[0].fin && frames[0].opcode == OP_TEXT);
    assert_eq!(frames[0].payload, text);
    assert_eq!(frames[1].close_code(), Some(1000));
}

#[test]
fn over_the_limits_closes_with_1009() {
    // Limits: frames of 1,024 bytes, messages of 4,096. A 2,000-byte frame is within the message limit,
    // so the frame limit alone closes it.
    let frame_over = client_frame(0x82, &[7; 2000]);
    let mut message_over = Vec::new();
    message_over.extend(client_frame(0x02, &[7; 1000]));
    for _ in 0..4 {
        message_over.extend(client_frame(0x00, &[7; 1000]));
    }
    message_over.extend(client_frame(0x80, &[7; 1000]));
    for (mode, node) in nodes() {
        let frames = after_ping(&node, &frame_over);
        assert_only_close(
            &frames,
            1009,
            &format!("{mode}: frame over max_frame_bytes"),
        );
        if mode == "echo" {
            let frames = after_ping(&node, &message_over);
            assert_only_close(&frames, 1009, "echo: message over max_message_bytes");
        }
    }
}
