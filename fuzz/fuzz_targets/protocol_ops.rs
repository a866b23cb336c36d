//! Structured requests for the protocol parser: the fuzzer picks an op, an `id`, names and a `data`
//! value; the request text is written by the client-side builders (`shards::protocol::client`), and
//! the server's parser must give exactly what docs/PROTOCOL.md says:
//!
//! - `id` over 64 bytes: `too_large` without an `id`; otherwise the `id` comes back verbatim, in the
//!   request and in the error or reply frame read back;
//! - names: empty or with a control character `bad_request`, over 128 bytes `too_large` (a name that
//!   is both may get either), else accepted verbatim; a presence query over 100 users `too_large`;
//! - an op that is not one of v1's: `unknown_op`;
//! - `identify`'s `resume`: absent or `null` is none; an object whose `epoch` and `session` are absent,
//!   `null` or strings of 1 to 64 bytes and whose `seq` is absent (0) or an integer from 0 to 2^64 - 1,
//!   with a `seq` over 0 only next to an `epoch`, comes out as written; any other shape `bad_request`;
//! - `data` comes out equal as JSON to what went in (strings, integers, structure; numbers equal as
//!   numbers), and again after the server encodes it into the `message` frame recipients read;
//!   wrapped in more levels of arrays and objects (a few, or, one input in 256, around a thousand), a
//!   frame nested deeper than 1024 levels in all is malformed (`bad_request`, no `id`), one at most
//!   that deep is not.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shards::protocol::{
    ErrorCode, Request,
    client::{self, ServerFrame, simd_json::BorrowedValue},
    encode,
    parse::{
        MAX_ID_BYTES, MAX_JSON_DEPTH, MAX_NAME_BYTES, MAX_PRESENCE_USERS, MAX_RESUME_TOKEN_BYTES,
        ResumeFrom,
    },
    parse_value,
};

#[derive(Arbitrary, Debug)]
enum Op {
    Identify,
    Send,
    Subscribe,
    Unsubscribe,
    Publish,
    PresenceUsers,
    PresenceChannel,
    Ping,
    Other(String),
}

/// A string, repeated so that lengths around the limits (64, 128 bytes) are easy to reach.
#[derive(Arbitrary, Debug, Clone)]
struct Text {
    base: String,
    repeat: u8,
}

impl Text {
    fn value(&self) -> String {
        self.base.repeat(1 + self.repeat as usize % 80)
    }
}

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// `identify`'s `resume` field, when there is one.
#[derive(Arbitrary, Debug)]
enum Resume {
    Null,
    /// Any JSON value (an object too, with fields of any name).
    Value(Json),
    /// The object of docs/PROTOCOL.md, each field well-formed or not.
    Position {
        session: Token,
        epoch: Token,
        seq: Seq,
    },
}

/// `resume`'s `epoch` or `session`.
#[derive(Arbitrary, Debug)]
enum Token {
    Absent,
    Null,
    Str(Text),
    Other(Json),
}

/// `resume`'s `seq`.
#[derive(Arbitrary, Debug)]
enum Seq {
    Absent,
    Uint(u64),
    Int(i64),
    Other(Json),
}

#[derive(Arbitrary, Debug)]
struct Input {
    op: Op,
    id: Option<Text>,
    name: Text,
    users: Vec<Text>,
    /// How many names the presence query lists (cycling through `users`).
    user_count: u8,
    /// `identify`'s `resume`.
    resume: Option<Resume>,
    /// Levels of arrays and objects around `data` ([`levels`]).
    nest: u16,
    data: Json,
}

fuzz_target!(|input: Input| {
    let id = input.id.as_ref().map(Text::value);
    let name = input.name.value();
    let users: Vec<String> = match input.users.is_empty() {
        true => vec![],
        false => (0..input.user_count as usize)
            .map(|i| input.users[i % input.users.len()].value())
            .collect(),
    };
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let data = nested(to_serde(&input.data, 0), levels(input.nest));
    let data_text = data.to_string();
    let resume = input.resume.as_ref().map(resume_value);
    // Only `identify` reads `resume`.
    let want_resume = match (&input.op, &resume) {
        (Op::Identify, Some(resume)) => resume_rule(resume),
        _ => Ok(None),
    };

    let id_ref = id.as_deref();
    let (text, expected) = match &input.op {
        Op::Identify => match &resume {
            None => (client::identify_user(id_ref, &name), Ok(())),
            Some(resume) => {
                let mut obj = serde_json::Map::new();
                obj.insert("op".into(), "identify".into());
                if let Some(id) = &id {
                    obj.insert("id".into(), id.clone().into());
                }
                obj.insert("user".into(), name.clone().into());
                obj.insert("resume".into(), resume.clone());
                let expected = want_resume
                    .as_ref()
                    .map(|_| ())
                    .map_err(|()| vec![ErrorCode::BadRequest]);
                (serde_json::Value::Object(obj).to_string(), expected)
            }
        },
        Op::Send => (client::send(id_ref, &name, &data_text), name_rule(&name)),
        Op::Subscribe => (client::subscribe(id_ref, &name), name_rule(&name)),
        Op::Unsubscribe => (client::unsubscribe(id_ref, &name), name_rule(&name)),
        Op::Publish => (client::publish(id_ref, &name, &data_text), name_rule(&name)),
        Op::PresenceUsers => {
            let expected = if users.len() > MAX_PRESENCE_USERS {
                Err(vec![ErrorCode::TooLarge])
            } else {
                users
                    .iter()
                    .map(|u| name_rule(u))
                    .find(Result::is_err)
                    .unwrap_or(Ok(()))
            };
            (client::presence_users(id_ref, &users), expected)
        }
        Op::PresenceChannel => (client::presence_channel(id_ref, &name), name_rule(&name)),
        Op::Ping => (client::ping(id_ref), Ok(())),
        Op::Other(op) => {
            const V1: [&str; 7] = [
                "identify",
                "send",
                "subscribe",
                "unsubscribe",
                "publish",
                "presence",
                "ping",
            ];
            if V1.contains(&op.as_str()) {
                return;
            }
            let mut obj = serde_json::Map::new();
            obj.insert("op".into(), op.clone().into());
            if let Some(id) = &id {
                obj.insert("id".into(), id.clone().into());
            }
            (
                serde_json::Value::Object(obj).to_string(),
                Err(vec![ErrorCode::UnknownOp]),
            )
        }
    };
    // The `id` is read before anything else.
    let id_too_long = id.as_ref().is_some_and(|i| i.len() > MAX_ID_BYTES);
    let (expected, echoed) = match id_too_long {
        true => (Err(vec![ErrorCode::TooLarge]), None),
        false => (expected, id_ref),
    };

    // The request's own object is one level, and what it nests: `data` or `resume`.
    let depth = 1 + match (&input.op, &resume) {
        (Op::Send | Op::Publish, _) => depth(&data),
        (Op::Identify, Some(resume)) => depth(resume),
        _ => 0,
    };

    let mut buf = text.clone().into_bytes();
    let value = match parse_value(&mut buf) {
        Ok(value) => {
            assert!(depth <= MAX_JSON_DEPTH, "{depth} levels parsed");
            value
        }
        Err(e) => {
            assert!(depth > MAX_JSON_DEPTH, "{text:?} is malformed: {e:?}");
            assert_eq!((e.id, e.code), (None, ErrorCode::BadRequest));
            return;
        }
    };
    match (Request::from_value(&value), expected) {
        (Ok((got_id, request)), Ok(())) => {
            assert_eq!(got_id, echoed, "id");
            let resume = want_resume.expect("an accepted resume");
            check_request(&input.op, &request, &name, &users, &data, resume);
        }
        (Err(e), Err(codes)) => {
            assert!(
                codes.contains(&e.code),
                "{text:?}: got {e:?}, want one of {codes:?}"
            );
            assert_eq!(e.id, echoed, "id echoed in the error");
            let mut payload = text_payload(&encode::error(e.id, e.code, &e.message));
            match ServerFrame::parse(&mut payload).expect("error frame parses") {
                ServerFrame::Error { id, code, .. } => {
                    assert_eq!((id.as_deref(), code), (echoed, e.code));
                }
                other => panic!("error frame read back as {other:?}"),
            }
        }
        (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
    }
});

/// The fields of an accepted request are the ones written, `data` included.
fn check_request(
    op: &Op,
    request: &Request<'_>,
    name: &str,
    users: &[&str],
    data: &serde_json::Value,
    resume: Option<Position<'_>>,
) {
    match (op, request) {
        (
            Op::Identify,
            Request::Identify {
                user,
                token,
                resume: got,
            },
        ) => {
            assert_eq!((*user, *token), (Some(name), None));
            let got = got.map(
                |ResumeFrom {
                     session,
                     epoch,
                     seq,
                 }| (session, epoch, seq),
            );
            assert_eq!(got, resume, "resume");
        }
        (Op::Send, Request::Send { to, data: d }) => {
            assert_eq!(*to, name);
            assert!(same(d, data), "send data {d:?} is not {data}");
            let mut payload = text_payload(&encode::direct_message("alice", d));
            check_delivered(&mut payload, None, data);
        }
        (Op::Publish, Request::Publish { channel, data: d }) => {
            assert_eq!(*channel, name);
            assert!(same(d, data), "publish data {d:?} is not {data}");
            let mut payload = text_payload(&encode::channel_message(channel, "alice", d));
            check_delivered(&mut payload, Some(name), data);
        }
        (
            Op::Subscribe,
            Request::Subscribe {
                channel,
                since,
                token,
            },
        ) => {
            assert_eq!(*channel, name);
            assert!(since.is_none(), "a plain subscribe read a since: {since:?}");
            assert!(token.is_none(), "a plain subscribe read a token: {token:?}");
        }
        (Op::Unsubscribe, Request::Unsubscribe { channel })
        | (Op::PresenceChannel, Request::PresenceChannel { channel, .. }) => {
            assert_eq!(*channel, name)
        }
        (Op::PresenceUsers, Request::PresenceUsers { users: got }) => assert_eq!(got, users),
        (Op::Ping, Request::Ping) => {}
        (op, request) => panic!("{op:?} parsed as {request:?}"),
    }
}

/// A delivered `message` frame reads back with the same channel and `data`.
fn check_delivered(payload: &mut [u8], channel: Option<&str>, data: &serde_json::Value) {
    match ServerFrame::parse(payload).expect("message frame parses") {
        ServerFrame::Message {
            from,
            channel: c,
            seq: None,
            epoch: None,
            data: d,
        } => {
            assert_eq!((from.as_deref(), c.as_deref()), (Some("alice"), channel));
            assert!(same(&d, data), "delivered data {d:?} is not {data}");
        }
        other => panic!("message frame read back as {other:?}"),
    }
}

/// The documented name rule; both codes when a name breaks both the length and the character rule.
fn name_rule(name: &str) -> Result<(), Vec<ErrorCode>> {
    let long = name.len() > MAX_NAME_BYTES;
    let bad = name.is_empty() || name.chars().any(char::is_control);
    match (long, bad) {
        (false, false) => Ok(()),
        (true, false) => Err(vec![ErrorCode::TooLarge]),
        (false, true) => Err(vec![ErrorCode::BadRequest]),
        (true, true) => Err(vec![ErrorCode::TooLarge, ErrorCode::BadRequest]),
    }
}

/// `resume` as JSON.
fn resume_value(r: &Resume) -> serde_json::Value {
    use serde_json::Value;
    match r {
        Resume::Null => Value::Null,
        Resume::Value(v) => to_serde(v, 0),
        Resume::Position {
            session,
            epoch,
            seq,
        } => {
            let token = |t: &Token| match t {
                Token::Absent => None,
                Token::Null => Some(Value::Null),
                Token::Str(t) => Some(t.value().into()),
                Token::Other(v) => Some(to_serde(v, 0)),
            };
            let seq = match seq {
                Seq::Absent => None,
                Seq::Uint(n) => Some((*n).into()),
                Seq::Int(n) => Some((*n).into()),
                Seq::Other(v) => Some(to_serde(v, 0)),
            };
            let fields = [
                ("session", token(session)),
                ("epoch", token(epoch)),
                ("seq", seq),
            ];
            Value::Object(
                fields
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_string(), v?)))
                    .collect(),
            )
        }
    }
}

/// A resume position as (`session`, `epoch`, `seq`).
type Position<'a> = (Option<&'a str>, Option<&'a str>, u64);

/// The documented rule for `resume`: the position it stands for, `None` for no resume, `Err` for
/// `bad_request`.
fn resume_rule(v: &serde_json::Value) -> Result<Option<Position<'_>>, ()> {
    use serde_json::Value;
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(obj) => obj,
        _ => return Err(()),
    };
    let token = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if (1..=MAX_RESUME_TOKEN_BYTES).contains(&s.len()) => {
            Ok(Some(s.as_str()))
        }
        Some(_) => Err(()),
    };
    let seq = match obj.get("seq") {
        None => 0,
        // Integers only: serde_json writes a float with a fraction or an exponent, never as an integer.
        Some(Value::Number(n)) => n.as_u64().ok_or(())?,
        Some(_) => return Err(()),
    };
    let (session, epoch) = (token("session")?, token("epoch")?);
    if epoch.is_none() && seq > 0 {
        return Err(());
    }
    Ok(Some((session, epoch, seq)))
}

/// Levels of nesting `nest` stands for: 0 to 15, or for one value in 256 (top byte 0xff) 1016 to 1031,
/// around `MAX_JSON_DEPTH` once the request's own object and `data`'s levels are added. Deep values
/// are rare because they are slow: a thousand levels cost a thousand allocations at each of the
/// target's steps, each with a deep stack for AddressSanitizer to record.
fn levels(nest: u16) -> usize {
    match nest {
        0xff00.. => MAX_JSON_DEPTH - 8 + (nest & 0xf) as usize,
        _ => (nest & 0xf) as usize,
    }
}

/// `v` inside `levels` arrays and objects (mostly arrays, an object every third level).
fn nested(mut v: serde_json::Value, levels: usize) -> serde_json::Value {
    for level in 0..levels {
        v = if level % 3 == 2 {
            // Not `json!`: it would copy `v` at every level.
            serde_json::Value::Object([("n".to_string(), v)].into_iter().collect())
        } else {
            serde_json::Value::Array(vec![v])
        };
    }
    v
}

/// Levels of arrays and objects in `v` (0 for a scalar).
fn depth(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The fuzzer's value as JSON, nesting cut at 32 levels (non-finite floats become `null`).
fn to_serde(j: &Json, depth: usize) -> serde_json::Value {
    use serde_json::Value;
    if depth > 32 {
        return Value::Null;
    }
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Int(i) => (*i).into(),
        Json::Uint(u) => (*u).into(),
        Json::Float(f) => (*f).into(),
        Json::Str(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(|v| to_serde(v, depth + 1)).collect()),
        Json::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_serde(v, depth + 1)))
                .collect(),
        ),
    }
}

/// JSON equality: same structure and strings, integers equal, floats equal as numbers.
fn same(a: &BorrowedValue<'_>, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    use shards::protocol::client::simd_json::{StaticNode as S, prelude::*};
    match (a, b) {
        (BorrowedValue::Static(S::Null), Value::Null) => true,
        (BorrowedValue::Static(S::Bool(x)), Value::Bool(y)) => x == y,
        (BorrowedValue::Static(x), Value::Number(n)) => {
            if let Some(n) = n.as_u64() {
                x.as_u64() == Some(n)
            } else if let Some(n) = n.as_i64() {
                x.as_i64() == Some(n)
            } else {
                x.as_f64() == n.as_f64()
            }
        }
        (BorrowedValue::String(x), Value::String(y)) => x == y,
        (BorrowedValue::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (BorrowedValue::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && y.iter()
                    .all(|(k, v)| x.get(k.as_str()).is_some_and(|w| same(w, v)))
        }
        _ => false,
    }
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
    frame[head..].to_vec()
}
