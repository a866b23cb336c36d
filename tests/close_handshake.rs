//! The server ends the TCP connection itself after a protocol error (RFC 6455 §7.1.1): once its close
//! frame is out it sends FIN, so the client sees the close frame and then EOF, without waiting for the
//! close grace (set to a minute here) and without having to send a close reply the server could not parse.

mod common;

use common::{Node, NodeOpts, OP_CLOSE, RawWs};

#[test]
fn oversize_frame_gets_1009_then_eof_without_a_close_reply() {
    let node = Node::start(
        NodeOpts::new()
            .set("websocket.max_message_bytes", 1024)
            .set("websocket.max_frame_bytes", 1024)
            .set("shutdown.close_grace_ms", 60_000),
    );
    let mut ws = RawWs::connect(node.ws_addr);
    // A masked binary frame announcing 4,000 bytes, followed by part of its payload: the header alone
    // is over the limit.
    let mut frame = vec![0x82, 0x80 | 126];
    frame.extend_from_slice(&4000u16.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend(std::iter::repeat_n(0u8, 2000));
    ws.send(&frame);

    // Everything the server sends until EOF: one close frame with 1009. A read timeout (a panic in
    // `frames_until_eof`) means the server kept the connection open waiting for a close reply.
    let frames = ws.frames_until_eof();
    assert_eq!(frames.len(), 1, "one close frame, then EOF: {frames:?}");
    assert_eq!(frames[0].opcode, OP_CLOSE, "{frames:?}");
    assert_eq!(frames[0].close_code(), Some(1009));
}
