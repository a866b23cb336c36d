//! Unit tests of `handshake`.

use super::*;

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const BASE: [&str; 5] = [
    "Host: example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

fn limits(max_header_bytes: usize) -> HandshakeLimits {
    HandshakeLimits { max_header_bytes }
}

/// A valid request for `target`, with `extra` header lines appended.
fn request(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\n{}\r\n{extra}\r\n",
        BASE.join("\r\n")
    )
}

/// A request to `/ws` with exactly these header lines.
fn with_headers(headers: &[&str]) -> String {
    let lines: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    format!("GET /ws HTTP/1.1\r\n{lines}\r\n")
}

/// [`BASE`] with header `index` replaced by `header`, or dropped if `None`.
fn replaced(index: usize, header: Option<&str>) -> String {
    let mut headers = BASE.to_vec();
    match header {
        Some(h) => headers[index] = h,
        None => drop(headers.remove(index)),
    }
    with_headers(&headers)
}

fn parse(s: &str) -> Result<Parse, Reject> {
    parse_request(s.as_bytes(), &limits(8192))
}

fn is_bad(s: &str) -> bool {
    matches!(parse(s), Err(Reject::BadRequest(_)))
}

fn done(s: &str) -> (Upgrade, usize) {
    match parse(s) {
        Ok(Parse::Done { upgrade, consumed }) => (upgrade, consumed),
        other => panic!("expected Done, got {other:?} for {s:?}"),
    }
}

#[test]
fn valid_request_rfc_example() {
    let req = request("/ws", "Origin: http://example.com\r\n");
    let (upgrade, consumed) = done(&req);
    assert_eq!(upgrade.accept_key, RFC_ACCEPT);
    assert_eq!(upgrade.origin.as_deref(), Some("http://example.com"));
    assert_eq!(consumed, req.len());
    let expected = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    assert_eq!(accept_response(&upgrade.accept_key), expected);
}

#[test]
fn paths() {
    for target in ["/", "/ws", "/?a=b", "/ws?token=x&y", "/ws?"] {
        assert_eq!(done(&request(target, "")).0.origin, None);
    }
    for target in ["/app/k1?protocol=7&client=js", "/app/a-b_c.9"] {
        let pusher = done(&request(target, ""))
            .0
            .pusher
            .expect("a Pusher target");
        assert!(pusher.key == "k1" || pusher.key == "a-b_c.9");
        assert_eq!(pusher.protocol.is_some(), pusher.key == "k1");
    }
    assert_eq!(done(&request("/ws", "")).0.pusher, None);
    for target in ["/app/", "/app", "/app/k/x", "/app/k%20", "/apps/k"] {
        assert_eq!(
            parse(&request(target, "")),
            Err(Reject::NotFound),
            "{target}"
        );
    }
    for target in ["/wss", "/ws/", "/foo", "//", "/WS", "http://h/ws", "*"] {
        assert_eq!(
            parse(&request(target, "")),
            Err(Reject::NotFound),
            "{target}"
        );
    }
}

#[test]
fn method_and_version() {
    for method in ["POST", "get", "HEAD"] {
        let req = request("/ws", "").replacen("GET", method, 1);
        assert_eq!(parse(&req), Err(Reject::MethodNotAllowed), "{method}");
    }
    let req = request("/ws", "").replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(parse(&req), Err(Reject::BadRequest("HTTP/1.1 required")));
}

#[test]
fn plain_http_is_upgrade_required() {
    let req = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    assert_eq!(parse(req), Err(Reject::UpgradeRequired));
    assert_eq!(parse(&replaced(1, None)), Err(Reject::UpgradeRequired));
    let h2c = replaced(1, Some("Upgrade: h2c"));
    assert_eq!(parse(&h2c), Err(Reject::UpgradeRequired));
}

#[test]
fn connection_must_contain_upgrade() {
    assert!(is_bad(&replaced(2, None)));
    assert!(is_bad(&replaced(2, Some("Connection: keep-alive"))));
    assert!(is_bad(&replaced(2, Some("Connection: upgraded"))));
    done(&replaced(2, Some("Connection: keep-alive, Upgrade")));
    done(&replaced(2, Some("Connection:keep-alive,upgrade ")));
    // The token may come in a second Connection header.
    let mut headers = BASE.to_vec();
    headers[2] = "Connection: keep-alive";
    headers.push("Connection: upgrade");
    done(&with_headers(&headers));
}

#[test]
fn case_insensitive_names_and_tokens() {
    let req = "GET /ws HTTP/1.1\r\nhost: x\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n\
               sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\n\
               oRiGiN: https://A.example\r\n\r\n";
    let (upgrade, _) = done(req);
    assert_eq!(upgrade.accept_key, RFC_ACCEPT);
    assert_eq!(upgrade.origin.as_deref(), Some("https://A.example"));
    done(&replaced(1, Some("Upgrade: foo, WEBSOCKET")));
}

#[test]
fn websocket_version() {
    assert!(is_bad(&replaced(4, None)));
    for v in ["8", "12", "14", "13, 8", ""] {
        let req = replaced(4, Some(&format!("Sec-WebSocket-Version: {v}")));
        assert_eq!(parse(&req), Err(Reject::UnsupportedVersion), "{v}");
    }
    done(&replaced(4, Some("Sec-WebSocket-Version:   13  ")));
}

#[test]
fn websocket_key() {
    assert!(is_bad(&replaced(3, None)));
    let short = [
        "",
        "short==",
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZQ=x",
    ];
    let long_or_bad_char = ["dGhlIHNhbXBsZSBub25j!Q==", "dGhlIHNhbXBsZSBub25jZQ==="];
    for k in short.into_iter().chain(long_or_bad_char) {
        let header = format!("Sec-WebSocket-Key: {k}");
        assert!(is_bad(&replaced(3, Some(&header))), "{k}");
    }
    let mut headers = BASE.to_vec();
    headers.push("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==");
    assert!(is_bad(&with_headers(&headers)));
    let spaced = replaced(3, Some(&format!("Sec-WebSocket-Key:  {RFC_KEY} ")));
    assert_eq!(done(&spaced).0.accept_key, RFC_ACCEPT);
}

#[test]
fn duplicate_or_non_utf8_origin() {
    assert!(is_bad(&request(
        "/",
        "Origin: https://a\r\nOrigin: https://b\r\n"
    )));
    let mut bytes = request("/", "Origin: https://\u{e9}\r\n").into_bytes();
    let i = bytes.iter().position(|&b| b == 0xc3).unwrap();
    bytes[i] = 0xff; // an obs-text byte httparse accepts, but not UTF-8
    let result = parse_request(&bytes, &limits(8192));
    assert!(matches!(result, Err(Reject::BadRequest(_))));
}

#[test]
fn malformed_http() {
    for req in ["GET\r\n\r\n", "\0\0", "GET / HTTP/9\r\n\r\n"] {
        assert!(is_bad(req), "{req:?}");
    }
    assert!(is_bad("GET / HTTP/1.1\r\nBad\r\n\r\n"));
}

#[test]
fn too_many_headers() {
    let filler: Vec<String> = (BASE.len()..MAX_HEADERS)
        .map(|i| format!("X-{i}: v"))
        .collect();
    let mut headers = BASE.to_vec();
    headers.extend(filler.iter().map(String::as_str));
    done(&with_headers(&headers));
    headers.push("X-One-Too-Many: v");
    let too_many = Err(Reject::BadRequest("too many headers"));
    assert_eq!(parse(&with_headers(&headers)), too_many);
}

#[test]
fn too_large() {
    let req = request("/ws", "").into_bytes();
    let exact = limits(req.len());
    assert!(matches!(
        parse_request(&req, &exact),
        Ok(Parse::Done { .. })
    ));
    let one_less = limits(req.len() - 1);
    assert_eq!(parse_request(&req, &one_less), Err(Reject::TooLarge));
    // Incomplete: over the limit, then within it.
    let partial = &req[..req.len() - 2];
    assert_eq!(parse_request(partial, &limits(16)), Err(Reject::TooLarge));
    assert_eq!(parse_request(partial, &exact), Ok(Parse::Partial));
    // A head within the limit followed by more bytes than the limit is fine.
    let mut pipelined = req.clone();
    pipelined.extend(std::iter::repeat_n(0x81u8, 100));
    assert!(matches!(
        parse_request(&pipelined, &exact),
        Ok(Parse::Done { .. })
    ));
}

#[test]
fn every_prefix_is_partial() {
    let req = request("/ws?x=1", "Origin: null\r\n");
    for cut in 0..req.len() {
        assert_eq!(parse(&req[..cut]), Ok(Parse::Partial), "cut at {cut}");
    }
    done(&req);
}

#[test]
fn pipelined_bytes_after_head() {
    let head = request("/", "");
    let mut buf = head.clone().into_bytes();
    buf.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e]);
    buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    match parse_request(&buf, &limits(8192)) {
        Ok(Parse::Done { consumed, .. }) => assert_eq!(consumed, head.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reject_responses_are_consistent() {
    let all = [
        (Reject::TooLarge, "too_large"),
        (Reject::BadRequest("x"), "bad_request"),
        (Reject::NotFound, "not_found"),
        (Reject::MethodNotAllowed, "method"),
        (Reject::UpgradeRequired, "upgrade_required"),
        (Reject::UnsupportedVersion, "version"),
    ];
    for (reject, reason) in all {
        assert_eq!(reject.metric_reason(), reason);
        assert!(!reject.to_string().is_empty());
        let bytes = reject_response(&reject);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head_len)) = resp.parse(bytes) else {
            panic!("{reject:?}: incomplete or invalid response");
        };
        assert_eq!(
            (resp.version, resp.code),
            (Some(1), Some(reject.status_code()))
        );
        let header = |name: &str| {
            let h = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name));
            h.map(|h| std::str::from_utf8(h.value).unwrap())
        };
        let body_len = (bytes.len() - head_len).to_string();
        assert_eq!(
            header("Content-Length"),
            Some(body_len.as_str()),
            "{reject:?}"
        );
        assert_ne!(body_len, "0");
        assert_eq!(header("Connection"), Some("close"));
        let is_426 = reject.status_code() == 426;
        assert_eq!(header("Upgrade").is_some(), is_426);
        let lists_version = header("Sec-WebSocket-Version") == Some("13");
        assert_eq!(lists_version, reject == Reject::UnsupportedVersion);
    }
}

#[test]
fn fuzz_no_panic() {
    // Deterministic xorshift64, so the test needs no extra crate.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut below = |n: usize| (next() % n as u64) as usize;
    let all_limits = [limits(0), limits(64), limits(8192)];
    let valid = request("/ws?q", "Origin: https://example.com\r\n").into_bytes();
    let alphabet = b"GET /wsHTP1.\r\n:, =?UpgradeConnectionSec-WebSocket-KeyVersion13\t\0\xff";
    for round in 0..20_000 {
        let buf: Vec<u8> = match round % 4 {
            0 => (0..below(300)).map(|_| below(256) as u8).collect(),
            1 => (0..below(300))
                .map(|_| alphabet[below(alphabet.len())])
                .collect(),
            2 => valid[..below(valid.len() + 1)].to_vec(),
            _ => {
                // A valid request with a few bytes mutated, possibly truncated.
                let mut b = valid.clone();
                for _ in 0..=below(4) {
                    let i = below(b.len());
                    b[i] = below(256) as u8;
                }
                b.truncate(b.len() - below(8));
                b
            }
        };
        for l in &all_limits {
            if let Err(reject) = parse_request(&buf, l) {
                assert!(!reject_response(&reject).is_empty());
            }
        }
    }
}
