//! The server ends the TCP connection itself after a protocol error (RFC 6455 §7.1.1): once its close
//! frame is out it sends FIN, so the client sees the close frame and then EOF, without waiting for the
//! close grace (set to a minute here) and without having to send a close reply the server could not parse.

mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    time::Duration,
};

use common::{Node, NodeOpts};

/// Performs the upgrade on a raw socket; returns it positioned after the 101 response.
fn upgraded(node: &Node) -> TcpStream {
    let mut s = TcpStream::connect(node.ws_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[test]
fn oversize_frame_gets_1009_then_eof_without_a_close_reply() {
    let node = Node::start(
        NodeOpts::new()
            .set("websocket.max_message_bytes", 1024)
            .set("websocket.max_frame_bytes", 1024)
            .set("shutdown.close_grace_ms", 60_000),
    );
    let mut s = upgraded(&node);
    // A masked binary frame announcing 4,000 bytes, followed by part of its payload: the header alone
    // is over the limit.
    let mut frame = vec![0x82, 0x80 | 126];
    frame.extend_from_slice(&4000u16.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend(std::iter::repeat_n(0u8, 2000));
    s.write_all(&frame).unwrap();

    // Everything the server sends until EOF: one close frame with 1009. A read timeout here means the
    // server kept the connection open waiting for a close reply.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "no EOF after the close frame ({} bytes so far): {e}",
                got.len()
            ),
        }
    }
    assert!(got.len() >= 4, "no close frame: {got:?}");
    assert_eq!(got[0], 0x88, "first frame is a close frame: {got:?}");
    let code = u16::from_be_bytes([got[2], got[3]]);
    assert_eq!(code, 1009);
}
