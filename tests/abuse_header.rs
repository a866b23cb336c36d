//! Abuse: huge upgrade requests. A request head of 1 MiB (one huge header, or many headers) is answered
//! with an HTTP error and the connection closed: 431 when the head passes `websocket.max_header_bytes`,
//! 400 when it has more than 32 header fields first (docs/PROTOCOL.md). The server never holds more
//! of a head than the limit, so 100 such requests in parallel leave its memory where it was.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::raw::mib;
use common::{IO_TIMEOUT, Node, NodeOpts};

const MIB: usize = 1024 * 1024;

/// A request line, then headers adding up to about 1 MiB, never finished by a blank line (the server
/// must answer before the end anyway).
fn one_huge_header() -> Vec<u8> {
    let mut req = b"GET /ws HTTP/1.1\r\nHost: gateway\r\nX-Big: ".to_vec();
    req.resize(req.len() + MIB, b'a');
    req.extend_from_slice(b"\r\n\r\n");
    req
}

/// 1 MiB of small headers (about 50,000 of them).
fn many_headers() -> Vec<u8> {
    let mut req = b"GET /ws HTTP/1.1\r\nHost: gateway\r\n".to_vec();
    let mut i = 0;
    while req.len() < MIB {
        req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        i += 1;
    }
    req.extend_from_slice(b"\r\n");
    req
}

/// 1 MiB in 20 large headers: each is over the limit on its own, so the byte limit is met first.
fn large_headers() -> Vec<u8> {
    let mut req = b"GET /ws HTTP/1.1\r\nHost: gateway\r\n".to_vec();
    for i in 0..20 {
        req.extend_from_slice(format!("X-L{i}: ").as_bytes());
        req.resize(req.len() + MIB / 20, b'b');
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req
}

/// Sends `request` (a writer thread: the server may answer and close long before the end, so write
/// errors are expected) and returns the status code of the response, asserting the server then closes.
fn status_of(node: &Node, request: Vec<u8>) -> u16 {
    let stream = TcpStream::connect_timeout(&node.ws_addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        for chunk in request.chunks(16 * 1024) {
            if writer.write_all(chunk).is_err() {
                return;
            }
        }
    });
    let mut reader = stream;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            // A reset after the response (our unread bytes at the server's close) ends it too.
            Err(e) if !response.is_empty() => {
                let _ = e;
                break;
            }
            Err(e) => panic!("no response before {e}"),
        }
    }
    let _ = sender.join();
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 ") && text.contains("\r\n\r\n"),
        "not an HTTP response: {text:?}"
    );
    text[9..12].parse().expect("status code")
}

#[test]
fn a_mebibyte_of_header_is_refused_with_431_or_400() {
    let node = Node::start(NodeOpts::new());
    assert_eq!(status_of(&node, one_huge_header()), 431, "one huge header");
    assert_eq!(status_of(&node, large_headers()), 431, "large headers");
    assert_eq!(status_of(&node, many_headers()), 400, "many headers");
    let too_large = node.metric_sum(
        "gateway_handshake_failures_total",
        &[("reason", "too_large")],
    );
    assert_eq!(too_large, 2.0);
    let open = node.wait_metric(
        "gateway_connections_open",
        &[],
        0.0,
        Duration::from_secs(10),
    );
    assert_eq!(open, 0.0, "refused connections still open");
    let mut c = node.identified("after");
    c.ping_pong("alive");
}

#[test]
fn a_hundred_huge_heads_in_parallel_are_never_buffered() {
    const PARALLEL: usize = 100;
    let node = Node::start(NodeOpts::new().shards(2));
    // Warm up: one of each, so what the first connections allocate is in the baseline.
    status_of(&node, one_huge_header());
    status_of(&node, many_headers());
    let baseline = node.rss_bytes();
    let statuses: Vec<u16> = thread::scope(|s| {
        let handles: Vec<_> = (0..PARALLEL)
            .map(|i| {
                let node = &node;
                s.spawn(move || {
                    let req = if i % 2 == 0 {
                        one_huge_header()
                    } else {
                        large_headers()
                    };
                    status_of(node, req)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = node.rss_bytes();
    eprintln!(
        "header: RSS baseline {}, after {PARALLEL} parallel 1 MiB heads {}",
        mib(baseline),
        mib(after)
    );
    assert!(statuses.iter().all(|&s| s == 431), "statuses: {statuses:?}");
    // Buffering the heads would take 100 MiB; the server holds at most max_header_bytes (8 KiB) each.
    assert!(
        after <= baseline + 16 * 1024 * 1024,
        "RSS grew from {} to {}",
        mib(baseline),
        mib(after)
    );
    let open = node.wait_metric(
        "gateway_connections_open",
        &[],
        0.0,
        Duration::from_secs(10),
    );
    assert_eq!(open, 0.0, "refused connections still open");
    let mut c = node.identified("after");
    c.ping_pong("alive");
}
