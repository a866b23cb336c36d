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
mod tests;
