//! Server side of the WebSocket opening handshake (RFC 6455 section 4.2), as pure functions over
//! bytes.
//!
//! The connection code reads bytes from the socket into a buffer and calls [`parse_request`] after
//! each read until it gets [`Parse::Done`] or a [`Reject`]; it then writes [`accept_response`] or
//! [`reject_response`]. Keeping this free of I/O lets every rule (path, method, headers, size
//! limit, pipelined bytes) be unit-tested directly, and keeps the connection task small.
//!
//! Rules: the request line must be `GET <path> HTTP/1.1` with path `/` or `/ws` (protocol v1), or
//! `/app/{key}` (the Pusher protocol; [`Upgrade::pusher`] carries the key and the `protocol` query
//! parameter), optionally followed by `?query`; `Upgrade` must contain `websocket`, `Connection` must contain the token
//! `upgrade` (both case-insensitive), `Sec-WebSocket-Version` must be `13` and `Sec-WebSocket-Key`
//! must have the shape of the base64 encoding of 16 bytes. `Origin` is not judged here; it is
//! returned for the caller's allow-list check. `Host` is not required.

use std::fmt;

use tungstenite::handshake::derive_accept_key;

/// Most headers a handshake request may carry.
const MAX_HEADERS: usize = 32;

/// Size limits applied while parsing the request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Largest accepted request head (request line, headers and the blank line), in bytes.
    pub max_header_bytes: usize,
}

/// What a valid upgrade request yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Value for the `Sec-WebSocket-Accept` response header, derived from `Sec-WebSocket-Key`.
    pub accept_key: String,
    /// The `Origin` header, if sent (trimmed), for the caller's allow-list check.
    pub origin: Option<String>,
    /// A Pusher client (`/app/{key}`); `None` for protocol v1.
    pub pusher: Option<PusherTarget>,
}

/// What the path of a Pusher client's upgrade names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherTarget {
    /// The app key of `/app/{key}`.
    pub key: String,
    /// The `protocol` query parameter, if given (the caller checks it: 4006, 4007, 4008).
    pub protocol: Option<String>,
}

/// Outcome of parsing the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// The head is not complete yet: read more and call again with the whole buffer.
    Partial,
    /// A complete, valid upgrade request.
    Done {
        /// What the response and the connection need.
        upgrade: Upgrade,
        /// Length of the request head; bytes after it (if any) are the client's first WebSocket
        /// frames and must be kept.
        consumed: usize,
    },
}

/// Why a request is refused; each maps to a fixed HTTP response ([`reject_response`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The request head exceeds `max_header_bytes`: 431.
    TooLarge,
    /// Malformed HTTP or a malformed WebSocket upgrade; the text says what (for logs): 400.
    BadRequest(&'static str),
    /// The path is not `/` or `/ws`: 404.
    NotFound,
    /// The method is not GET: 405.
    MethodNotAllowed,
    /// A plain HTTP request, or an upgrade to something other than `websocket`: 426.
    UpgradeRequired,
    /// `Sec-WebSocket-Version` is not 13: 426 with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
}

impl Reject {
    /// Label value for `gateway_handshake_failures_total{reason}`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Reject::TooLarge => "too_large",
            Reject::BadRequest(_) => "bad_request",
            Reject::NotFound => "not_found",
            Reject::MethodNotAllowed => "method",
            Reject::UpgradeRequired => "upgrade_required",
            Reject::UnsupportedVersion => "version",
        }
    }

    /// HTTP status code of the response sent for this rejection.
    pub fn status_code(&self) -> u16 {
        match self {
            Reject::TooLarge => 431,
            Reject::BadRequest(_) => 400,
            Reject::NotFound => 404,
            Reject::MethodNotAllowed => 405,
            Reject::UpgradeRequired | Reject::UnsupportedVersion => 426,
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::TooLarge => f.write_str("request head too large"),
            Reject::BadRequest(why) => write!(f, "bad request: {why}"),
            Reject::NotFound => f.write_str("path not found"),
            Reject::MethodNotAllowed => f.write_str("method not allowed"),
            Reject::UpgradeRequired => f.write_str("not a websocket upgrade"),
            Reject::UnsupportedVersion => f.write_str("unsupported websocket version"),
        }
    }
}

impl std::error::Error for Reject {}

/// Parses the request head at the start of `buf` (everything received so far).
///
/// Returns [`Parse::Partial`] while the head is incomplete and within the size limit. Never panics.
pub fn parse_request(buf: &[u8], limits: &HandshakeLimits) -> Result<Parse, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > limits.max_header_bytes => {
            return Err(Reject::TooLarge);
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_header_bytes => {
            return Err(Reject::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(Parse::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject::BadRequest("too many headers"));
        }
        Err(_) => return Err(Reject::BadRequest("malformed HTTP request")),
    };

    if req.version != Some(1) {
        return Err(Reject::BadRequest("HTTP/1.1 required"));
    }
    let pusher = match target(req.path.unwrap_or("")) {
        Some(Target::Native) => None,
        Some(Target::Pusher(t)) => Some(t),
        None => return Err(Reject::NotFound),
    };
    if req.method != Some("GET") {
        return Err(Reject::MethodNotAllowed);
    }

    let mut upgrade_websocket = false;
    let mut connection_upgrade = false;
    let mut version: Option<&[u8]> = None;
    let mut key: Option<&[u8]> = None;
    let mut origin: Option<&[u8]> = None;
    for header in req.headers.iter() {
        let value = header.value.trim_ascii();
        let name = header.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade_websocket |= has_token(value, b"websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= has_token(value, b"upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            set_once(&mut version, value, "duplicate Sec-WebSocket-Version")?;
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            set_once(&mut key, value, "duplicate Sec-WebSocket-Key")?;
        } else if name.eq_ignore_ascii_case("origin") {
            set_once(&mut origin, value, "duplicate Origin")?;
        }
    }

    if !upgrade_websocket {
        return Err(Reject::UpgradeRequired);
    }
    if !connection_upgrade {
        return Err(Reject::BadRequest("Connection header lacks upgrade"));
    }
    match version {
        None => return Err(Reject::BadRequest("missing Sec-WebSocket-Version")),
        Some(b"13") => {}
        Some(_) => return Err(Reject::UnsupportedVersion),
    }
    let key = key.ok_or(Reject::BadRequest("missing Sec-WebSocket-Key"))?;
    if !key_shape_ok(key) {
        return Err(Reject::BadRequest("malformed Sec-WebSocket-Key"));
    }
    let origin = origin
        .map(|o| std::str::from_utf8(o).map(str::to_owned))
        .transpose()
        .map_err(|_| Reject::BadRequest("Origin is not UTF-8"))?;

    Ok(Parse::Done {
        upgrade: Upgrade {
            accept_key: derive_accept_key(key),
            origin,
            pusher,
        },
        consumed,
    })
}

/// The `101 Switching Protocols` response completing the handshake.
pub fn accept_response(accept_key: &str) -> Vec<u8> {
    const HEAD: &str =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let mut out = Vec::with_capacity(HEAD.len() + 28 + accept_key.len());
    out.extend_from_slice(HEAD.as_bytes());
    out.extend_from_slice(b"Sec-WebSocket-Accept: ");
    out.extend_from_slice(accept_key.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

// Complete rejection responses; `reject_responses_are_consistent` checks each Content-Length.
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\n\
    Connection: close\r\n\r\nrequest header fields too large\n";
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n\
    Connection: close\r\n\r\nbad request\n";
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n\
    Connection: close\r\n\r\nnot found\n";
const METHOD_NOT_ALLOWED: &[u8] = b"HTTP/1.1 405 Method Not Allowed\r\n\
    Allow: GET\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 19\r\n\
    Connection: close\r\n\r\nmethod not allowed\n";
const UPGRADE_REQUIRED: &[u8] = b"HTTP/1.1 426 Upgrade Required\r\n\
    Upgrade: websocket\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 27\r\n\
    Connection: close\r\n\r\nwebsocket upgrade required\n";
const UNSUPPORTED_VERSION: &[u8] = b"HTTP/1.1 426 Upgrade Required\r\n\
    Upgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 30\r\n\
    Connection: close\r\n\r\nunsupported websocket version\n";

/// The complete HTTP response for a rejection (status line, `Content-Length`, `Connection: close`
/// and a short text body). The caller writes it and closes the connection.
pub fn reject_response(reject: &Reject) -> &'static [u8] {
    match reject {
        Reject::TooLarge => TOO_LARGE,
        Reject::BadRequest(_) => BAD_REQUEST,
        Reject::NotFound => NOT_FOUND,
        Reject::MethodNotAllowed => METHOD_NOT_ALLOWED,
        Reject::UpgradeRequired => UPGRADE_REQUIRED,
        Reject::UnsupportedVersion => UNSUPPORTED_VERSION,
    }
}

/// What a request target names.
enum Target {
    /// `/` or `/ws`: protocol v1.
    Native,
    /// `/app/{key}`: the Pusher protocol.
    Pusher(PusherTarget),
}

/// Longest app key accepted in a Pusher path.
const MAX_KEY_BYTES: usize = 128;

/// The endpoint of a request target (`/`, `/ws` or `/app/{key}`, optionally followed by a query
/// string); `None`: not found.
fn target(target: &str) -> Option<Target> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/" || path == "/ws" {
        return Some(Target::Native);
    }
    let key = path.strip_prefix("/app/")?;
    let key_ok = !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !key_ok {
        return None;
    }
    let protocol = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("protocol="))
        .map(str::to_owned);
    Some(Target::Pusher(PusherTarget {
        key: key.to_owned(),
        protocol,
    }))
}

/// Whether the comma-separated header value contains `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// Records a header that may appear only once.
fn set_once<'a>(
    slot: &mut Option<&'a [u8]>,
    value: &'a [u8],
    duplicate: &'static str,
) -> Result<(), Reject> {
    if slot.replace(value).is_some() {
        return Err(Reject::BadRequest(duplicate));
    }
    Ok(())
}

/// Whether `key` looks like base64 of 16 bytes: 22 base64 characters followed by `==`.
fn key_shape_ok(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
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
}
