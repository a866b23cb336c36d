//! Client frames into typed requests, with every field rule of docs/PROTOCOL.md checked here.

use simd_json::{BorrowedValue, prelude::*};

use super::{ErrorCode, RequestError};

/// Longest `id` echoed back.
pub const MAX_ID_BYTES: usize = 64;
/// Longest user or channel name.
pub const MAX_NAME_BYTES: usize = 128;
/// Most users in one presence query.
pub const MAX_PRESENCE_USERS: usize = 100;
/// Deepest nesting of arrays and objects in a frame; deeper is `bad_request`. simd-json enforces it
/// while it builds its tape, which it does with an explicit stack (no recursion), so a frame nested
/// 10,000 deep is refused before any value exists. Building the value, dropping it and writing `data`
/// out again recurse once per level; this bound keeps that to a few hundred KiB of a shard thread's
/// 2 MiB stack, so no scan of our own is needed in front of the parser.
pub const MAX_JSON_DEPTH: usize = simd_json::DEFAULT_MAX_DEPTH;

/// A valid client request; borrows from the parsed frame.
#[derive(Debug)]
pub enum Request<'a> {
    /// Claim an identity: `user` in dev mode, `token` in JWT mode (checked by the caller).
    Identify {
        user: Option<&'a str>,
        token: Option<&'a str>,
        /// Resume the user's stream from this position (replay what was missed).
        resume: Option<ResumeFrom<'a>>,
    },
    /// A direct message to every connection of `to`.
    Send {
        to: &'a str,
        data: &'a BorrowedValue<'a>,
    },
    /// Join a channel; with `since`, replay what it published after that position first (channels
    /// with history).
    Subscribe {
        channel: &'a str,
        since: Option<ResumeFrom<'a>>,
        /// A subscription token (JWT mode, channels whose rule is `grant`).
        token: Option<&'a str>,
    },
    /// Leave a channel.
    Unsubscribe { channel: &'a str },
    /// A message to every subscriber of `channel` but the publishing connection.
    Publish {
        channel: &'a str,
        data: &'a BorrowedValue<'a>,
    },
    /// Which of `users` are online.
    PresenceUsers { users: Vec<&'a str> },
    /// Who is subscribed to `channel` (`token`: a subscription token for it, as on subscribe).
    PresenceChannel {
        channel: &'a str,
        token: Option<&'a str>,
    },
    /// Replace the connection's JWT before it expires (same `sub`): new expiry, new grants.
    Refresh { token: &'a str },
    /// Application-level ping.
    Ping,
}

/// `identify`'s `resume`: the position the client last reached in its user's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeFrom<'a> {
    /// The `session` of the connection being resumed (informational: logged).
    pub session: Option<&'a str>,
    /// The stream's epoch the client saw; `None` only with `seq` 0 (it has received nothing).
    pub epoch: Option<&'a str>,
    /// The last `seq` the client received.
    pub seq: u64,
}

/// Longest `epoch` or `session` accepted in `resume`.
pub const MAX_RESUME_TOKEN_BYTES: usize = 64;

impl Request<'_> {
    /// True for the ops allowed before identify (identify itself: nothing else is accepted).
    pub fn allowed_anonymous(&self) -> bool {
        matches!(self, Request::Identify { .. })
    }
}

/// Parses a frame's bytes in place (simd-json mutates the buffer).
pub fn parse_value(buf: &mut [u8]) -> Result<BorrowedValue<'_>, RequestError<'static>> {
    simd_json::to_borrowed_value(buf)
        .map_err(|_| RequestError::new(None, ErrorCode::BadRequest, "malformed JSON"))
}

impl<'a> Request<'a> {
    /// Reads the request out of a parsed frame; returns its `id` too.
    pub fn from_value(
        value: &'a BorrowedValue<'a>,
    ) -> Result<(Option<&'a str>, Request<'a>), RequestError<'a>> {
        let Some(obj) = value.as_object() else {
            return Err(RequestError::new(
                None,
                ErrorCode::BadRequest,
                "a frame must be a JSON object",
            ));
        };
        let id = match obj.get("id") {
            None | Some(BorrowedValue::Static(simd_json::StaticNode::Null)) => None,
            Some(v) => match v.as_str() {
                Some(s) if s.len() <= MAX_ID_BYTES => Some(s),
                Some(_) => {
                    return Err(RequestError::new(
                        None,
                        ErrorCode::TooLarge,
                        "id over 64 bytes",
                    ));
                }
                None => {
                    return Err(RequestError::new(
                        None,
                        ErrorCode::BadRequest,
                        "id must be a string",
                    ));
                }
            },
        };
        let err = |code, msg: &'static str| RequestError::new(id, code, msg);
        let Some(op) = obj.get("op").and_then(|v| v.as_str()) else {
            return Err(err(ErrorCode::BadRequest, "missing \"op\""));
        };
        let name = |field: &'static str, what: &'static str| -> Result<&'a str, RequestError<'a>> {
            let v = obj
                .get(field)
                .and_then(|v| v.as_str())
                .ok_or_else(|| err(ErrorCode::BadRequest, what))?;
            check_name(v).map_err(|(code, msg)| err(code, msg))?;
            Ok(v)
        };
        let data = || {
            obj.get("data")
                .ok_or_else(|| err(ErrorCode::BadRequest, "missing \"data\""))
        };
        let req = match op {
            "identify" => Request::Identify {
                user: obj.get("user").and_then(|v| v.as_str()),
                token: match obj.get("token").and_then(|v| v.as_str()) {
                    Some(t) if t.len() > MAX_TOKEN_BYTES => {
                        return Err(err(ErrorCode::TooLarge, "\"token\" over 8192 bytes"));
                    }
                    t => t,
                },
                resume: position(obj.get("resume"), &RESUME)
                    .map_err(|msg| err(ErrorCode::BadRequest, msg))?,
            },
            "send" => Request::Send {
                to: name("to", "\"to\" must be a user name")?,
                data: data()?,
            },
            "subscribe" => Request::Subscribe {
                channel: name("channel", "\"channel\" must be a string")?,
                since: position(obj.get("since"), &SINCE)
                    .map_err(|msg| err(ErrorCode::BadRequest, msg))?,
                token: optional_token(obj).map_err(|msg| err(ErrorCode::BadRequest, msg))?,
            },
            "unsubscribe" => Request::Unsubscribe {
                channel: name("channel", "\"channel\" must be a string")?,
            },
            "publish" => Request::Publish {
                channel: name("channel", "\"channel\" must be a string")?,
                data: data()?,
            },
            "presence" => presence(obj, id)?,
            "ping" => Request::Ping,
            "refresh" => Request::Refresh {
                token: optional_token(obj)
                    .map_err(|msg| err(ErrorCode::BadRequest, msg))?
                    .ok_or_else(|| err(ErrorCode::BadRequest, "refresh needs a \"token\""))?,
            },
            _ => return Err(err(ErrorCode::UnknownOp, "unknown op")),
        };
        Ok((id, req))
    }
}

/// The two shapes of `presence`: by `users` or by `channel`.
fn presence<'a>(
    obj: &'a simd_json::borrowed::Object<'a>,
    id: Option<&'a str>,
) -> Result<Request<'a>, RequestError<'a>> {
    let err = |code, msg: &'static str| RequestError::new(id, code, msg);
    if let Some(list) = obj.get("users") {
        let Some(arr) = list.as_array() else {
            return Err(err(
                ErrorCode::BadRequest,
                "\"users\" must be an array of names",
            ));
        };
        if arr.len() > MAX_PRESENCE_USERS {
            return Err(err(
                ErrorCode::TooLarge,
                "at most 100 users per presence query",
            ));
        }
        let mut users = Vec::with_capacity(arr.len());
        for u in arr {
            let u = u
                .as_str()
                .ok_or_else(|| err(ErrorCode::BadRequest, "\"users\" must be an array of names"))?;
            check_name(u).map_err(|(code, msg)| err(code, msg))?;
            users.push(u);
        }
        return Ok(Request::PresenceUsers { users });
    }
    match obj.get("channel").and_then(|v| v.as_str()) {
        Some(channel) => {
            check_name(channel).map_err(|(code, msg)| err(code, msg))?;
            let token = optional_token(obj).map_err(|msg| err(ErrorCode::BadRequest, msg))?;
            Ok(Request::PresenceChannel { channel, token })
        }
        None => Err(err(
            ErrorCode::BadRequest,
            "presence needs \"users\" or \"channel\"",
        )),
    }
}

/// Longest token accepted in `subscribe`, `presence` and `refresh` (a JWT with a few dozen grant
/// patterns fits many times over).
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Reads an optional `token` string (absent or `null`: none).
fn optional_token<'a>(
    obj: &'a simd_json::borrowed::Object<'a>,
) -> Result<Option<&'a str>, &'static str> {
    match obj.get("token") {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => match v.as_str() {
            Some(t) if !t.is_empty() && t.len() <= MAX_TOKEN_BYTES => Ok(Some(t)),
            _ => Err("\"token\" must be a string of 1 to 8192 bytes"),
        },
    }
}

/// The error messages of one position field (`identify`'s `resume`, `subscribe`'s `since`).
struct PositionField {
    not_object: &'static str,
    bad_token: &'static str,
    bad_seq: &'static str,
    seq_without_epoch: &'static str,
}

const RESUME: PositionField = PositionField {
    not_object: "\"resume\" must be an object",
    bad_token: "\"resume\": \"epoch\" and \"session\" must be strings of 1 to 64 bytes",
    bad_seq: "\"resume\": \"seq\" must be a non-negative integer",
    seq_without_epoch: "\"resume\": a \"seq\" needs its \"epoch\"",
};

const SINCE: PositionField = PositionField {
    not_object: "\"since\" must be an object",
    bad_token: "\"since\": \"epoch\" must be a string of 1 to 64 bytes",
    bad_seq: "\"since\": \"seq\" must be a non-negative integer",
    seq_without_epoch: "\"since\": a \"seq\" needs its \"epoch\"",
};

/// Reads a stream position (`resume` or `since`; absent or `null`: none).
fn position<'a>(
    value: Option<&'a BorrowedValue<'a>>,
    field: &PositionField,
) -> Result<Option<ResumeFrom<'a>>, &'static str> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(None);
    }
    let obj = value.as_object().ok_or(field.not_object)?;
    let token = |name: &str| -> Result<Option<&'a str>, &'static str> {
        match obj.get(name) {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v) => match v.as_str() {
                Some(s) if !s.is_empty() && s.len() <= MAX_RESUME_TOKEN_BYTES => Ok(Some(s)),
                _ => Err(field.bad_token),
            },
        }
    };
    let seq = match obj.get("seq") {
        None => 0,
        Some(v) => v.as_u64().ok_or(field.bad_seq)?,
    };
    let epoch = token("epoch")?;
    if epoch.is_none() && seq > 0 {
        return Err(field.seq_without_epoch);
    }
    Ok(Some(ResumeFrom {
        session: token("session")?,
        epoch,
        seq,
    }))
}

/// The rule for user and channel names: 1..=128 bytes, no control characters.
pub fn check_name(name: &str) -> Result<(), (ErrorCode, &'static str)> {
    if name.is_empty() {
        return Err((ErrorCode::BadRequest, "empty name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err((ErrorCode::TooLarge, "name over 128 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err((ErrorCode::BadRequest, "control character in name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<(Option<String>, String), (Option<String>, ErrorCode)> {
        let mut buf = json.as_bytes().to_vec();
        let v = parse_value(&mut buf).map_err(|e| (None, e.code))?;
        match Request::from_value(&v) {
            Ok((id, r)) => Ok((id.map(String::from), format!("{r:?}"))),
            Err(e) => Err((e.id.map(String::from), e.code)),
        }
    }

    #[test]
    fn every_op_parses() {
        let (id, r) = req(r#"{"op":"identify","id":"i","user":"alice"}"#).unwrap();
        assert_eq!(id.as_deref(), Some("i"));
        assert!(r.contains("Identify") && r.contains("alice"));
        assert!(
            req(r#"{"op":"send","id":"m1","to":"bob","data":{"x":[1,2]}}"#)
                .unwrap()
                .1
                .starts_with("Send")
        );
        assert!(
            req(r#"{"op":"subscribe","channel":"room:1"}"#)
                .unwrap()
                .1
                .starts_with("Subscribe")
        );
        assert!(
            req(r#"{"op":"unsubscribe","channel":"room:1"}"#)
                .unwrap()
                .1
                .starts_with("Unsubscribe")
        );
        assert!(
            req(r#"{"op":"publish","channel":"c","data":null}"#)
                .unwrap()
                .1
                .starts_with("Publish")
        );
        assert!(
            req(r#"{"op":"presence","users":["a","b"]}"#)
                .unwrap()
                .1
                .contains("[\"a\", \"b\"]")
        );
        assert!(
            req(r#"{"op":"presence","channel":"c"}"#)
                .unwrap()
                .1
                .starts_with("PresenceChannel")
        );
        assert_eq!(
            req(r#"{"op":"ping","id":"x"}"#).unwrap(),
            (Some("x".into()), "Ping".into())
        );
    }

    #[test]
    fn bad_requests_carry_their_id_and_code() {
        assert_eq!(req("{not json").unwrap_err(), (None, ErrorCode::BadRequest));
        assert_eq!(req("[1,2]").unwrap_err(), (None, ErrorCode::BadRequest));
        assert_eq!(
            req(r#"{"id":"a"}"#).unwrap_err(),
            (Some("a".into()), ErrorCode::BadRequest)
        );
        assert_eq!(
            req(r#"{"op":"fly","id":"b"}"#).unwrap_err(),
            (Some("b".into()), ErrorCode::UnknownOp)
        );
        assert_eq!(
            req(r#"{"op":"send","id":"c","to":"bob"}"#).unwrap_err().1,
            ErrorCode::BadRequest
        );
        assert_eq!(
            req(r#"{"op":"send","to":"","data":1}"#).unwrap_err().1,
            ErrorCode::BadRequest
        );
        assert_eq!(
            req(r#"{"op":"send","to":"a\u0001","data":1}"#)
                .unwrap_err()
                .1,
            ErrorCode::BadRequest
        );
        let long = format!(r#"{{"op":"subscribe","channel":"{}"}}"#, "x".repeat(129));
        assert_eq!(req(&long).unwrap_err().1, ErrorCode::TooLarge);
        assert_eq!(
            req(r#"{"op":"ping","id":5}"#).unwrap_err().1,
            ErrorCode::BadRequest
        );
        let many: Vec<String> = (0..101).map(|i| format!("\"u{i}\"")).collect();
        let q = format!(r#"{{"op":"presence","users":[{}]}}"#, many.join(","));
        assert_eq!(req(&q).unwrap_err().1, ErrorCode::TooLarge);
        assert_eq!(
            req(r#"{"op":"presence"}"#).unwrap_err().1,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn identify_takes_a_resume_position() {
        let r =
            req(r#"{"op":"identify","user":"a","resume":{"session":"s1","epoch":"e1","seq":7}}"#)
                .unwrap()
                .1;
        assert!(
            r.contains("session: Some(\"s1\")")
                && r.contains("epoch: Some(\"e1\")")
                && r.contains("seq: 7"),
            "{r}"
        );
        let r = req(r#"{"op":"identify","user":"a","resume":{}}"#)
            .unwrap()
            .1;
        assert!(r.contains("seq: 0"), "{r}");
        assert!(
            req(r#"{"op":"identify","user":"a","resume":null}"#)
                .unwrap()
                .1
                .contains("resume: None")
        );
        for bad in [
            r#"{"op":"identify","user":"a","resume":1}"#,
            r#"{"op":"identify","user":"a","resume":{"epoch":"e","seq":-1}}"#,
            r#"{"op":"identify","user":"a","resume":{"epoch":"e","seq":1.5}}"#,
            r#"{"op":"identify","user":"a","resume":{"epoch":7,"seq":1}}"#,
            r#"{"op":"identify","user":"a","resume":{"epoch":"","seq":1}}"#,
            r#"{"op":"identify","user":"a","resume":{"seq":3}}"#,
        ] {
            assert_eq!(req(bad).unwrap_err().1, ErrorCode::BadRequest, "{bad}");
        }
        let long = format!(
            r#"{{"op":"identify","user":"a","resume":{{"epoch":"{}","seq":1}}}}"#,
            "e".repeat(65)
        );
        assert_eq!(req(&long).unwrap_err().1, ErrorCode::BadRequest);
    }

    #[test]
    fn subscribe_takes_a_since_position() {
        let r = req(r#"{"op":"subscribe","channel":"room:1","since":{"epoch":"e1","seq":9}}"#)
            .unwrap()
            .1;
        assert!(
            r.contains("epoch: Some(\"e1\")") && r.contains("seq: 9"),
            "{r}"
        );
        let r = req(r#"{"op":"subscribe","channel":"room:1"}"#).unwrap().1;
        assert!(r.contains("since: None"), "{r}");
        let r = req(r#"{"op":"subscribe","channel":"room:1","since":{}}"#)
            .unwrap()
            .1;
        assert!(r.contains("since: Some") && r.contains("seq: 0"), "{r}");
        for (bad, says) in [
            (
                r#"{"op":"subscribe","channel":"c","since":"x"}"#,
                "\"since\" must",
            ),
            (
                r#"{"op":"subscribe","channel":"c","since":{"seq":2}}"#,
                "needs its",
            ),
            (
                r#"{"op":"subscribe","channel":"c","since":{"epoch":"e","seq":-2}}"#,
                "\"seq\"",
            ),
            (
                r#"{"op":"subscribe","channel":"c","since":{"epoch":1}}"#,
                "\"epoch\"",
            ),
        ] {
            let mut buf = bad.as_bytes().to_vec();
            let v = parse_value(&mut buf).unwrap();
            let e = Request::from_value(&v).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad}");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn nesting_is_bounded_before_any_value_is_built() {
        let nested = |depth: usize, open: &str, close: &str| {
            let inner = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            format!(r#"{{"op":"send","to":"bob","data":{inner}}}"#)
        };
        // The frame's own object is one level.
        for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
            let ok = nested(MAX_JSON_DEPTH - 1, open, close);
            assert!(req(&ok).unwrap().1.starts_with("Send"), "{open}");
            let deep = nested(MAX_JSON_DEPTH, open, close);
            assert_eq!(req(&deep).unwrap_err(), (None, ErrorCode::BadRequest));
            let very_deep = nested(10_000, open, close);
            assert_eq!(req(&very_deep).unwrap_err(), (None, ErrorCode::BadRequest));
        }
    }

    #[test]
    fn only_identify_is_anonymous() {
        let mut buf = br#"{"op":"identify","user":"a"}"#.to_vec();
        let v = parse_value(&mut buf).unwrap();
        assert!(Request::from_value(&v).unwrap().1.allowed_anonymous());
        let mut buf = br#"{"op":"ping"}"#.to_vec();
        let v = parse_value(&mut buf).unwrap();
        assert!(!Request::from_value(&v).unwrap().1.allowed_anonymous());
        let mut buf = br#"{"op":"subscribe","channel":"c"}"#.to_vec();
        let v = parse_value(&mut buf).unwrap();
        assert!(!Request::from_value(&v).unwrap().1.allowed_anonymous());
    }
}
