//! The protocol's request parser (`shards::protocol::parse`) on arbitrary bytes: the payload of a
//! client's text or binary message, parsed in place by simd-json as the dispatcher does.
//!
//! Checks, besides never panicking (the rules are docs/PROTOCOL.md's):
//! - a frame that parses is UTF-8 (a binary message is not validated before the parser, so the
//!   parser is what keeps invalid UTF-8 out of the `&str`s it returns), and nests arrays and objects
//!   at most 1024 deep (`MAX_JSON_DEPTH`; deeper is malformed, `bad_request`);
//! - an accepted request: its `id` is at most 64 bytes, every user and channel name obeys the name
//!   rule (1 to 128 bytes, no control character), a presence query lists at most 100 users; an
//!   `identify` with `resume` has an `epoch` and a `session` of 1 to 64 bytes when present, and a
//!   `seq` over 0 only with an `epoch`;
//! - a refused one: its code is one the parser may give (`bad_request`, `unknown_op`, `too_large`),
//!   and any `id` it echoes is at most 64 bytes;
//! - the reply the server would send (ready, a resumed ready, pong, ack, presence, error, and the
//!   `message` frame carrying `data`, numbered with `seq` and `epoch` or not) is a text frame that the
//!   client-side reader parses back to the same `id`, names, code, position and `data`.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shards::{
    history::{self, Gap, Outcome},
    protocol::{
        ErrorCode, Request,
        client::{ServerFrame, simd_json::BorrowedValue},
        encode,
        parse::{
            MAX_ID_BYTES, MAX_JSON_DEPTH, MAX_NAME_BYTES, MAX_PRESENCE_USERS,
            MAX_RESUME_TOKEN_BYTES, MAX_TOKEN_BYTES, check_name,
        },
        parse_value,
    },
};

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let value = match parse_value(&mut buf) {
        Ok(value) => value,
        Err(e) => {
            assert_eq!((e.id, e.code), (None, ErrorCode::BadRequest));
            check_error_reply(None, e.code, &e.message);
            return;
        }
    };
    assert!(std::str::from_utf8(data).is_ok(), "non-UTF-8 input parsed");
    let depth = json_depth(data);
    assert!(depth <= MAX_JSON_DEPTH, "JSON nested {depth} deep parsed");
    match Request::from_value(&value) {
        Ok((id, request)) => {
            if let Some(id) = id {
                assert!(
                    id.len() <= MAX_ID_BYTES,
                    "id of {} bytes accepted",
                    id.len()
                );
            }
            check_request(id, &request);
        }
        Err(e) => {
            assert!(
                matches!(
                    e.code,
                    ErrorCode::BadRequest | ErrorCode::UnknownOp | ErrorCode::TooLarge
                ),
                "{e:?}"
            );
            if let Some(id) = e.id {
                assert!(id.len() <= MAX_ID_BYTES, "id of {} bytes echoed", id.len());
            }
            check_error_reply(e.id, e.code, &e.message);
        }
    }
});

/// Field rules of an accepted request, and its replies read back.
fn check_request(id: Option<&str>, request: &Request<'_>) {
    let name_ok = |name: &str| {
        assert!(check_name(name).is_ok(), "name {name:?} accepted");
        assert!((1..=MAX_NAME_BYTES).contains(&name.len()));
        assert!(!name.chars().any(char::is_control));
    };
    let token_ok = |token: &Option<&str>| {
        if let Some(t) = token {
            assert!(
                (1..=MAX_TOKEN_BYTES).contains(&t.len()),
                "token of {} bytes",
                t.len()
            );
        }
    };
    match request {
        Request::Identify { resume, .. } => {
            let frame = encode::ready(id, "user", "0123456789abcdef", "node", (0, 25_000), None);
            let mut payload = text_payload(&frame);
            let reply = ServerFrame::parse(&mut payload).expect("ready parses");
            assert_eq!(reply.id(), id);
            if let Some(resume) = resume {
                for token in [resume.session, resume.epoch].into_iter().flatten() {
                    assert!(
                        (1..=MAX_RESUME_TOKEN_BYTES).contains(&token.len()),
                        "resume token of {} bytes accepted",
                        token.len()
                    );
                }
                assert!(
                    resume.epoch.is_some() || resume.seq == 0,
                    "a resume seq without its epoch accepted"
                );
                check_ready_resumed(id, resume.seq);
            }
        }
        Request::Send { to, data } => {
            name_ok(to);
            check_message(None, to, data);
            check_ack(id, "delivered", Some(2));
            check_ack(id, "stored", Some(0));
        }
        Request::Publish { channel, data } => {
            name_ok(channel);
            check_message(Some(channel), "sender", data);
            check_ack(id, "published", Some(0));
        }
        Request::Subscribe {
            channel,
            since,
            token,
        } => {
            name_ok(channel);
            token_ok(token);
            check_ack(id, "subscribed", None);
            if let Some(since) = since {
                // The same position rules as identify's resume (docs/PROTOCOL.md, "since").
                if let Some(epoch) = since.epoch {
                    assert!(
                        (1..=MAX_RESUME_TOKEN_BYTES).contains(&epoch.len()),
                        "since epoch of {} bytes accepted",
                        epoch.len()
                    );
                }
                assert!(
                    since.epoch.is_some() || since.seq == 0,
                    "a since seq without its epoch accepted"
                );
                check_subscribed_resumed(id, since.seq);
            }
        }
        Request::Unsubscribe { channel } => {
            name_ok(channel);
            check_ack(id, "unsubscribed", None);
        }
        Request::PresenceUsers { users } => {
            assert!(users.len() <= MAX_PRESENCE_USERS);
            users.iter().for_each(|u| name_ok(u));
            // The router answers once per distinct name (docs/PROTOCOL.md: one key per name).
            let mut want: Vec<(&str, bool)> =
                users.iter().map(|u| (*u, u.len() % 2 == 0)).collect();
            want.sort_unstable();
            want.dedup();
            let frame = encode::presence_users(id, want.iter().copied());
            let mut payload = text_payload(&frame);
            match ServerFrame::parse(&mut payload).expect("presence parses") {
                ServerFrame::PresenceUsers { id: got, online } => {
                    assert_eq!(got.as_deref(), id);
                    let mut got: Vec<(&str, bool)> =
                        online.iter().map(|(u, b)| (u.as_ref(), *b)).collect();
                    got.sort_unstable();
                    assert_eq!(got, want, "presence answer read back differently");
                }
                other => panic!("presence read back as {other:?}"),
            }
        }
        Request::PresenceChannel { channel, token } => {
            name_ok(channel);
            token_ok(token);
            let users = ["alice", "bob"];
            let frame = encode::presence_channel(id, channel, &users);
            let mut payload = text_payload(&frame);
            match ServerFrame::parse(&mut payload).expect("presence parses") {
                ServerFrame::PresenceChannel {
                    id: got,
                    channel: c,
                    users: u,
                    count,
                } => {
                    assert_eq!((got.as_deref(), c.as_ref()), (id, *channel));
                    assert_eq!((u.len(), count), (2, 2));
                }
                other => panic!("presence read back as {other:?}"),
            }
        }
        Request::Refresh { token } => token_ok(&Some(token)),
        Request::Ping => {
            let mut payload = text_payload(&encode::pong(id));
            let reply = ServerFrame::parse(&mut payload).expect("pong parses");
            assert!(matches!(reply, ServerFrame::Pong { .. }));
            assert_eq!(reply.id(), id);
        }
    }
}

/// The `message` frame recipients get carries the same `data`, `from` and `channel`; a direct
/// message numbered for the recipient's stream carries its `seq` and `epoch` too.
fn check_message(channel: Option<&str>, from: &str, data: &BorrowedValue<'_>) {
    let frame = match channel {
        Some(c) => encode::channel_message(c, from, data),
        None => encode::direct_message(from, data),
    };
    read_message(&frame, channel, from, data, None);
    if channel.is_none() {
        let seq = from.len() as u64 * 7919;
        let epoch = format!("{:016x}", seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let numbered = history::sequenced(&frame, seq, &epoch);
        assert_eq!(history::frame_seq(&numbered), seq);
        read_message(&numbered, None, from, data, Some((seq, &epoch)));
    }
}

fn read_message(
    frame: &[u8],
    channel: Option<&str>,
    from: &str,
    data: &BorrowedValue<'_>,
    position: Option<(u64, &str)>,
) {
    let mut payload = text_payload(frame);
    match ServerFrame::parse(&mut payload).expect("message parses") {
        ServerFrame::Message {
            from: f,
            channel: c,
            seq,
            epoch,
            data: d,
        } => {
            assert_eq!((f.as_deref(), c.as_deref()), (Some(from), channel));
            assert_eq!((seq, epoch.as_deref()), position.unzip());
            assert!(same_json(&d, data), "data changed: {data:?} became {d:?}");
        }
        other => panic!("message read back as {other:?}"),
    }
}

/// The `ready` answering a resume reads back as `ready`, with `resumed`, `reason`, `epoch`, `seq` and
/// `replayed` as the outcome says (docs/PROTOCOL.md, "Resume").
fn check_ready_resumed(id: Option<&str>, seq: u64) {
    let gaps = [
        None,
        Some(Gap::TooOld),
        Some(Gap::EpochChanged),
        Some(Gap::InvalidPosition),
        Some(Gap::Unavailable),
    ];
    for gap in gaps {
        let outcome = match gap {
            Some(Gap::Unavailable) => Outcome::unavailable(),
            _ => Outcome {
                gap,
                epoch: Some(Arc::from(format!("{seq:016x}"))),
                seq,
                replayed: seq % 501,
            },
        };
        let frame =
            encode::ready_resumed(id, "user", "0123456789abcdef", "node", 1, 25_000, &outcome);
        let mut payload = text_payload(&frame);
        let reply = ServerFrame::parse(&mut payload).expect("resumed ready parses");
        assert!(matches!(reply, ServerFrame::Ready { .. }));
        assert_eq!(reply.id(), id);

        use shards::protocol::client::simd_json::{self, prelude::*};
        let mut payload = text_payload(&frame);
        let v = simd_json::to_borrowed_value(&mut payload).expect("resumed ready is JSON");
        assert_eq!(v["resumed"].as_bool(), Some(gap.is_none()));
        assert_eq!(
            v.get("reason").and_then(|r| r.as_str()),
            gap.map(Gap::as_str)
        );
        assert_eq!(v["epoch"].as_str(), outcome.epoch.as_deref());
        assert!(outcome.epoch.is_some() || v["epoch"].is_null());
        assert_eq!(v["seq"].as_u64(), Some(outcome.seq));
        assert_eq!(v["replayed"].as_u64(), Some(outcome.replayed));
    }
}

/// The `subscribed` ack of a subscribe with `since` reads back as an ack with the outcome's fields.
fn check_subscribed_resumed(id: Option<&str>, seq: u64) {
    for gap in [None, Some(Gap::TooOld), Some(Gap::NoHistory)] {
        let outcome = match gap {
            Some(Gap::NoHistory) => Outcome::not_kept(Gap::NoHistory),
            _ => Outcome {
                gap,
                epoch: Some(Arc::from(format!("{seq:016x}"))),
                seq,
                replayed: seq % 501,
            },
        };
        let frame = encode::subscribed_resumed(id, &outcome);
        let mut payload = text_payload(&frame);
        match ServerFrame::parse(&mut payload).expect("resumed ack parses") {
            ServerFrame::Ack { id: got, .. } => assert_eq!(got.as_deref(), id),
            other => panic!("resumed ack read back as {other:?}"),
        }
        use shards::protocol::client::simd_json::{self, prelude::*};
        let mut payload = text_payload(&frame);
        let v = simd_json::to_borrowed_value(&mut payload).expect("resumed ack is JSON");
        assert_eq!(v["status"].as_str(), Some("subscribed"));
        assert_eq!(v["resumed"].as_bool(), Some(gap.is_none()));
        assert_eq!(v["reason"].as_str(), gap.map(|g| g.as_str()));
        assert_eq!(v["seq"].as_u64(), Some(outcome.seq));
    }
}

fn check_ack(id: Option<&str>, status: &str, conns: Option<u64>) {
    let mut payload = text_payload(&encode::ack(id, status, conns));
    match ServerFrame::parse(&mut payload).expect("ack parses") {
        ServerFrame::Ack {
            id: got, conns: c, ..
        } => assert_eq!((got.as_deref(), c), (id, conns)),
        other => panic!("ack read back as {other:?}"),
    }
}

/// The error frame for a refused request reads back with the same `id` and code.
fn check_error_reply(id: Option<&str>, code: ErrorCode, message: &str) {
    let mut payload = text_payload(&encode::error(id, code, message));
    match ServerFrame::parse(&mut payload).expect("error parses") {
        ServerFrame::Error {
            id: got,
            code: c,
            message: m,
        } => assert_eq!((got.as_deref(), c, m.as_ref()), (id, code, message)),
        other => panic!("error read back as {other:?}"),
    }
}

/// The deepest nesting of arrays and objects in JSON text (exact for valid JSON: strings are skipped).
fn json_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The payload of an unmasked, final text frame, after checking its header.
fn text_payload(frame: &[u8]) -> Vec<u8> {
    assert_eq!(frame[0], 0x81, "not a final text frame");
    let (head, len) = match frame[1] {
        126 => (4, u16::from_be_bytes([frame[2], frame[3]]) as usize),
        127 => (
            10,
            u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
        ),
        n => (2, n as usize),
    };
    assert_eq!(frame.len() - head, len, "frame length");
    let payload = frame[head..].to_vec();
    assert!(
        std::str::from_utf8(&payload).is_ok(),
        "server frame not UTF-8"
    );
    payload
}

/// JSON equality as the protocol promises it for `data`: same structure, strings and integers,
/// numbers equal as numbers (`1e2` may come back as `100.0`), object members in any order.
fn same_json(a: &BorrowedValue<'_>, b: &BorrowedValue<'_>) -> bool {
    use shards::protocol::client::simd_json::{StaticNode as S, prelude::*};
    match (a, b) {
        (BorrowedValue::String(x), BorrowedValue::String(y)) => x == y,
        (BorrowedValue::Array(x), BorrowedValue::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(x, y)| same_json(x, y))
        }
        (BorrowedValue::Object(x), BorrowedValue::Object(y)) => {
            // simd-json keeps every member of an object with a repeated key, and the server writes
            // them all back: compare the members as multisets, not as a map.
            let mut unused: Vec<_> = y.iter().collect();
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    let found = unused.iter().position(|(l, w)| k == *l && same_json(v, w));
                    found.map(|i| unused.swap_remove(i)).is_some()
                })
        }
        (BorrowedValue::Static(S::Null), BorrowedValue::Static(S::Null)) => true,
        (BorrowedValue::Static(S::Bool(x)), BorrowedValue::Static(S::Bool(y))) => x == y,
        (BorrowedValue::Static(x), BorrowedValue::Static(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        _ => false,
    }
}
