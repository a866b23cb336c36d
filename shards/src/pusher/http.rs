//! The Pusher HTTP API's transport: a plain HTTP/1.1 request on the WebSocket listener, framed by the
//! connection task and answered by the shard that accepted it.
//!
//! The server SDKs and Laravel's broadcaster take one host and port for both the WebSocket and the
//! HTTP API, as Pusher's own service and the self-hosted peers serve them. A request to `/apps/...`
//! is read into the connection's handshake buffer (head within `websocket.max_header_bytes`, body
//! within [`MAX_BODY_BYTES`], both within the handshake timeout), answered by [`super::api`] with a
//! JSON body, and the connection is closed after the answer (`Connection: close`): one request per
//! connection keeps the listener's handshake path the only HTTP parser of the shard.

use bytes::Bytes;

use crate::{
    conn::Phase,
    ids::ConnId,
    shard::{Shard, ShardState},
    ws::CloseReason,
};

/// Largest request body accepted (413 beyond): ten events of [`super::api::MAX_DATA_BYTES`] each and
/// their names.
pub const MAX_BODY_BYTES: usize = 10 * super::api::MAX_DATA_BYTES + 64 * 1024;

pub use super::http_message::{Request, Response};

/// Whether the bytes received so far (`buf`, then `data`) start a request for the HTTP API: a request
/// line `<METHOD> /apps/...`. Undecided (too few bytes) reads as `false`: the upgrade parser keeps the
/// bytes, and the next read decides.
pub fn is_api(buf: &[u8], data: &[u8]) -> bool {
    const PREFIX: &[u8] = b" /apps/";
    let mut head = [0u8; 16];
    let from_buf = buf.len().min(head.len());
    head[..from_buf].copy_from_slice(&buf[..from_buf]);
    let from_data = data.len().min(head.len() - from_buf);
    head[from_buf..from_buf + from_data].copy_from_slice(&data[..from_data]);
    let known = &head[..from_buf + from_data];
    let Some(space) = known.iter().position(|&b| b == b' ') else {
        return false;
    };
    known[..space].iter().all(u8::is_ascii_uppercase)
        && known.len() >= space + PREFIX.len()
        && &known[space..space + PREFIX.len()] == PREFIX
}

/// Bytes of an HTTP API request: buffered until the head and the body are complete, then answered.
pub fn on_bytes(shard: &Shard, st: &mut ShardState, id: ConnId, data: &[u8], now: u64) {
    let max_head = shard.config.max_header_bytes;
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    let Phase::Handshake(buf) = &mut conn.phase else {
        return;
    };
    let room = (max_head + MAX_BODY_BYTES + 1).saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
    let (response, unread) = match framed(buf, max_head) {
        Framed::Partial => return,
        Framed::Refused(response) => (response, true),
        Framed::Complete { head, length } => {
            let buf = std::mem::take(buf);
            let answer = match parse(&buf[..head], &buf[head..head + length]) {
                Some(req) => super::api::answer(shard, st, id, &req, now),
                None => Ok(Response::error(400, "malformed request")),
            };
            match answer {
                Ok(response) => (response, false),
                Err(query) => {
                    // Waiting first: an answer found in place is written at once.
                    wait(shard, st, id, now);
                    return super::gather::start(shard, st, *query, now);
                }
            }
        }
    };
    respond(shard, st, id, &response, unread, now);
}

/// How far a buffered request is.
enum Framed {
    /// More bytes are needed.
    Partial,
    /// Refused before its body is read.
    Refused(Response),
    /// Head of `head` bytes and a body of `length` bytes, all buffered.
    Complete { head: usize, length: usize },
}

/// Where the head ends and how long the body is.
fn framed(buf: &[u8], max_head: usize) -> Framed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() <= max_head => return Framed::Partial,
        Ok(_) => return Framed::Refused(Response::error(431, "request head too large")),
        Err(_) => return Framed::Refused(Response::error(400, "malformed HTTP request")),
    };
    let mut length = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Framed::Refused(Response::error(411, "send a Content-Length"));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                Some(n) => length = n,
                None => return Framed::Refused(Response::error(400, "bad Content-Length")),
            }
        }
    }
    if length > MAX_BODY_BYTES {
        return Framed::Refused(Response::error(413, "request body too large"));
    }
    if buf.len() < head + length {
        return Framed::Partial;
    }
    Framed::Complete { head, length }
}

/// The request of a complete, framed head and its body.
fn parse<'a>(head: &'a [u8], body: &'a [u8]) -> Option<Request<'a>> {
    let line_end = head.iter().position(|&b| b == b'\r')?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Request {
        method,
        path,
        query,
        body,
    })
}

/// `s` with its `%XX` escapes decoded; `None` when an escape is malformed or the result not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The request's answer comes later (from other shards or the cluster): the connection waits, for at
/// most the handshake timeout.
fn wait(shard: &Shard, st: &mut ShardState, id: ConnId, now: u64) {
    let deadline_ms = now + shard.config.handshake_timeout.as_millis() as u64;
    if let Some(conn) = st.conns.get_mut(id) {
        conn.phase = Phase::Answering { deadline_ms };
        st.conns.schedule(id, deadline_ms);
    }
}

/// The answer of a request that waited (`wait`), if its connection still waits.
pub fn answer_later(shard: &Shard, st: &mut ShardState, id: ConnId, r: &Response, now: u64) {
    if st
        .conns
        .get(id)
        .is_some_and(|c| matches!(c.phase, Phase::Answering { .. }))
    {
        respond(shard, st, id, r, false, now);
    }
}

/// Queues the response and closes the connection once it is written. With `unread` (a request refused
/// before its body was read) the rest of the request is read and discarded until the client closes (a
/// lingering close): closing with unread bytes would reset the connection and lose the answer.
fn respond(shard: &Shard, st: &mut ShardState, id: ConnId, r: &Response, unread: bool, now: u64) {
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason_phrase(r.status),
        r.body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(r.body.as_bytes());
    conn.out.push(Bytes::from(out));
    let deadline_ms = now + shard.config.close_grace.as_millis() as u64;
    conn.phase = Phase::Closing {
        reason: CloseReason::Normal,
        deadline_ms,
        peer_done: !unread,
        desync: true,
        write_shut: false,
    };
    st.conns.schedule(id, deadline_ms);
    st.conns.wake(id); // the response goes out with the next I/O pass
}

/// The reason phrase of the statuses the API answers with.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_requests_are_told_from_upgrades_by_their_first_bytes() {
        assert!(is_api(b"", b"POST /apps/1/events?x HTTP/1.1\r\n"));
        assert!(is_api(b"GET /ap", b"ps/1/channels HTTP/1.1\r\n"));
        assert!(!is_api(b"", b"GET /ws HTTP/1.1\r\n"));
        assert!(!is_api(b"", b"GET /app/key?protocol=7 HTTP/1.1\r\n"));
        assert!(!is_api(b"", b"POST /ap"), "undecided until more bytes come");
        assert!(!is_api(b"", b"post /apps/1/events"));
    }

    #[test]
    fn heads_and_bodies_are_framed_within_their_bounds() {
        let req = b"POST /apps/1/events HTTP/1.1\r\nContent-Length: 4\r\n\r\n{}";
        assert!(matches!(framed(req, 8192), Framed::Partial));
        let full = b"POST /apps/1/events HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        let Framed::Complete { head, length } = framed(full, 8192) else {
            panic!("complete");
        };
        assert_eq!((length, &full[head..]), (2, &b"{}"[..]));
        let big = format!(
            "POST /apps/1/events HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        assert!(matches!(framed(big.as_bytes(), 8192), Framed::Refused(r) if r.status == 413));
        let chunked = b"POST /apps/1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(framed(chunked, 8192), Framed::Refused(r) if r.status == 411));
        assert!(
            matches!(framed(&[b'a'; 300], 256), Framed::Refused(r) if r.status == 400 || r.status == 431)
        );
    }

    #[test]
    fn queries_are_percent_decoded() {
        let head = b"GET /apps/1/channels?info=user_count%2Csubscription_count&auth_key=k&x HTTP/1.1\r\n\r\n";
        let req = parse(head, b"").expect("parses");
        assert_eq!((req.method, req.path), ("GET", "/apps/1/channels"));
        assert_eq!(
            req.query[0],
            ("info".into(), "user_count,subscription_count".into())
        );
        assert_eq!(req.query[2], ("x".into(), String::new()));
        assert!(parse(b"GET /apps/1?a=%zz HTTP/1.1\r\n\r\n", b"").is_none());
        assert!(parse(b"GET /apps/1?a=%ff HTTP/1.1\r\n\r\n", b"").is_none());
    }
}
