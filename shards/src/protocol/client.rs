//! Protocol v1 from the client's side: the text of every request op, and server frames parsed back.
//!
//! Load generators and tests speak the protocol through this module rather than through hand-written
//! JSON, so client and server cannot drift apart: the builders escape strings with the same
//! [`write_json_str`] the server's encoder uses, and the tests below feed every builder's output to the
//! server's own request parser and every server encoder's output to [`ServerFrame::parse`].

use std::{borrow::Cow, fmt};

use bytes::{BufMut, BytesMut};
use simd_json::{BorrowedValue, prelude::*};

use super::{ErrorCode, encode::write_json_str};

/// The JSON crate whose values appear in [`ServerFrame::Message`]'s `data`, for clients that read
/// them (`use shards::protocol::client::simd_json::prelude::*`).
pub use simd_json;

/// A request frame being written: `{"op":"<op>"` plus fields, closed by [`Req::finish`].
struct Req(BytesMut);

impl Req {
    /// Starts `{"op":"<op>"` with the `id` when there is one.
    fn new(op: &str, id: Option<&str>, hint: usize) -> Self {
        let mut out = BytesMut::with_capacity(24 + op.len() + hint);
        out.extend_from_slice(b"{\"op\":\"");
        out.extend_from_slice(op.as_bytes());
        out.put_u8(b'"');
        let mut req = Req(out);
        if let Some(id) = id {
            req = req.str("id", id);
        }
        req
    }

    /// Appends `,"key":`.
    fn key(mut self, key: &str) -> Self {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
        self
    }

    /// Appends `,"key":"value"` (escaped).
    fn str(self, key: &str, value: &str) -> Self {
        let mut req = self.key(key);
        write_json_str(&mut req.0, value);
        req
    }

    /// Appends `,"key":<json>` with `json` copied verbatim.
    fn raw(self, key: &str, json: &str) -> Self {
        let mut req = self.key(key);
        req.0.extend_from_slice(json.as_bytes());
        req
    }

    /// Closes the object.
    fn finish(mut self) -> String {
        self.0.put_u8(b'}');
        // Only `&str` pieces and ASCII punctuation were written.
        String::from_utf8(self.0.to_vec()).expect("request text is UTF-8")
    }
}

/// `identify` in dev mode: the client names itself.
pub fn identify_user(id: Option<&str>, user: &str) -> String {
    Req::new("identify", id, user.len() + 16)
        .str("user", user)
        .finish()
}

/// `identify` in JWT mode.
pub fn identify_token(id: Option<&str>, token: &str) -> String {
    Req::new("identify", id, token.len() + 16)
        .str("token", token)
        .finish()
}

/// `send`: a direct message to every connection of `to`. `data` is JSON text, inserted verbatim.
pub fn send(id: Option<&str>, to: &str, data: &str) -> String {
    Req::new("send", id, to.len() + data.len() + 24)
        .str("to", to)
        .raw("data", data)
        .finish()
}

/// `subscribe` to a channel.
pub fn subscribe(id: Option<&str>, channel: &str) -> String {
    Req::new("subscribe", id, channel.len() + 16)
        .str("channel", channel)
        .finish()
}

/// `unsubscribe` from a channel.
pub fn unsubscribe(id: Option<&str>, channel: &str) -> String {
    Req::new("unsubscribe", id, channel.len() + 16)
        .str("channel", channel)
        .finish()
}

/// `publish` to a channel. `data` is JSON text, inserted verbatim.
pub fn publish(id: Option<&str>, channel: &str, data: &str) -> String {
    Req::new("publish", id, channel.len() + data.len() + 24)
        .str("channel", channel)
        .raw("data", data)
        .finish()
}

/// `presence` by users.
pub fn presence_users(id: Option<&str>, users: &[&str]) -> String {
    let mut req = Req::new("presence", id, users.len() * 16 + 16).key("users");
    req.0.put_u8(b'[');
    for (i, user) in users.iter().enumerate() {
        if i > 0 {
            req.0.put_u8(b',');
        }
        write_json_str(&mut req.0, user);
    }
    req.0.put_u8(b']');
    req.finish()
}

/// `presence` by channel.
pub fn presence_channel(id: Option<&str>, channel: &str) -> String {
    Req::new("presence", id, channel.len() + 16)
        .str("channel", channel)
        .finish()
}

/// Application-level `ping`.
pub fn ping(id: Option<&str>) -> String {
    Req::new("ping", id, 0).finish()
}

/// The `status` of an `ack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    /// `send` reached at least one connection.
    Delivered,
    /// `send` found no connection of the user; history is off, so nothing was kept.
    Offline,
    /// `send` found no connection of the user; the message is kept for its next resume.
    Stored,
    /// `subscribe` done.
    Subscribed,
    /// `unsubscribe` done.
    Unsubscribed,
    /// `publish` done (`conns` may be 0).
    Published,
    /// Cluster mode with Redis unreachable: only this node's connections were reached (`conns`).
    Unavailable,
    /// `refresh` done: the connection's token was replaced.
    Refreshed,
}

impl AckStatus {
    /// Reads the wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "delivered" => AckStatus::Delivered,
            "offline" => AckStatus::Offline,
            "stored" => AckStatus::Stored,
            "subscribed" => AckStatus::Subscribed,
            "unsubscribed" => AckStatus::Unsubscribed,
            "published" => AckStatus::Published,
            "unavailable" => AckStatus::Unavailable,
            "refreshed" => AckStatus::Refreshed,
            _ => return None,
        })
    }
}

/// Reads an error `code` by its wire name.
pub fn error_code(s: &str) -> Option<ErrorCode> {
    [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::NotIdentified,
        ErrorCode::Unauthorized,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Forbidden,
        ErrorCode::TooManyConnections,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
}

/// A data frame from the server, borrowing from the buffer it was parsed from.
#[derive(Debug)]
pub enum ServerFrame<'a> {
    /// The reply to `identify`.
    Ready {
        /// The request's `id`.
        id: Option<Cow<'a, str>>,
        /// The identity the connection now has.
        user: Cow<'a, str>,
        /// Hex id of the connection.
        session: Cow<'a, str>,
        /// The node holding the connection.
        node: Cow<'a, str>,
        /// The shard holding the connection.
        shard: u64,
        /// The server's ping interval.
        heartbeat_ms: u64,
    },
    /// The reply to `send`, `subscribe`, `unsubscribe` and `publish`.
    Ack {
        /// The request's `id`.
        id: Option<Cow<'a, str>>,
        /// What happened.
        status: AckStatus,
        /// Connections reached (`send` and `publish` only).
        conns: Option<u64>,
    },
    /// A delivered `send` (no `channel`) or `publish` (with `channel`).
    Message {
        /// The sending user; `None` for a message a backend sent through the HTTP API.
        from: Option<Cow<'a, str>>,
        /// The channel, for a published message.
        channel: Option<Cow<'a, str>>,
        /// The message's number in its stream: the recipient's (direct messages, history on) or the
        /// channel's (channels with history).
        seq: Option<u64>,
        /// The stream's epoch, with `seq`.
        epoch: Option<Cow<'a, str>>,
        /// The sender's `data`.
        data: BorrowedValue<'a>,
    },
    /// The reply to `presence` by users.
    PresenceUsers {
        /// The request's `id`.
        id: Option<Cow<'a, str>>,
        /// Each requested user and whether it is online.
        online: Vec<(Cow<'a, str>, bool)>,
    },
    /// The reply to `presence` by channel.
    PresenceChannel {
        /// The request's `id`.
        id: Option<Cow<'a, str>>,
        /// The channel asked about.
        channel: Cow<'a, str>,
        /// Distinct subscribed users, sorted.
        users: Vec<Cow<'a, str>>,
        /// Length of `users`.
        count: u64,
    },
    /// The reply to `ping`.
    Pong {
        /// The request's `id`.
        id: Option<Cow<'a, str>>,
    },
    /// An error frame.
    Error {
        /// The request's `id`, when the server could read it.
        id: Option<Cow<'a, str>>,
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable text.
        message: Cow<'a, str>,
    },
}

/// Why a server frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON.
    Json,
    /// JSON but not an object.
    NotObject,
    /// A required field is absent.
    Missing(&'static str),
    /// A field has the wrong type or an unknown value.
    Invalid(&'static str),
    /// An `op` this client does not know.
    UnknownOp(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Json => f.write_str("server frame is not JSON"),
            FrameError::NotObject => f.write_str("server frame is not a JSON object"),
            FrameError::Missing(k) => write!(f, "server frame lacks \"{k}\""),
            FrameError::Invalid(k) => write!(f, "server frame has an invalid \"{k}\""),
            FrameError::UnknownOp(op) => write!(f, "server frame has unknown op {op:?}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The fields of a parsed frame, taken out one by one.
struct Fields<'a>(simd_json::borrowed::Object<'a>);

impl<'a> Fields<'a> {
    fn opt_str(&mut self, key: &'static str) -> Result<Option<Cow<'a, str>>, FrameError> {
        match self.0.remove(key) {
            None | Some(BorrowedValue::Static(simd_json::StaticNode::Null)) => Ok(None),
            Some(BorrowedValue::String(s)) => Ok(Some(s)),
            Some(_) => Err(FrameError::Invalid(key)),
        }
    }

    fn str(&mut self, key: &'static str) -> Result<Cow<'a, str>, FrameError> {
        self.opt_str(key)?.ok_or(FrameError::Missing(key))
    }

    fn opt_u64(&mut self, key: &'static str) -> Result<Option<u64>, FrameError> {
        match self.0.remove(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(FrameError::Invalid(key)),
        }
    }

    fn u64(&mut self, key: &'static str) -> Result<u64, FrameError> {
        self.opt_u64(key)?.ok_or(FrameError::Missing(key))
    }

    fn value(&mut self, key: &'static str) -> Result<BorrowedValue<'a>, FrameError> {
        self.0.remove(key).ok_or(FrameError::Missing(key))
    }
}

impl<'a> ServerFrame<'a> {
    /// Parses a text frame's payload in place (simd-json rewrites the buffer).
    pub fn parse(buf: &'a mut [u8]) -> Result<Self, FrameError> {
        let value = simd_json::to_borrowed_value(buf).map_err(|_| FrameError::Json)?;
        let BorrowedValue::Object(obj) = value else {
            return Err(FrameError::NotObject);
        };
        let mut f = Fields(*obj);
        let op = f.str("op")?;
        Ok(match op.as_ref() {
            "ready" => ServerFrame::Ready {
                id: f.opt_str("id")?,
                user: f.str("user")?,
                session: f.str("session")?,
                node: f.str("node")?,
                shard: f.u64("shard")?,
                heartbeat_ms: f.u64("heartbeat_ms")?,
            },
            "ack" => ServerFrame::Ack {
                id: f.opt_str("id")?,
                status: AckStatus::from_wire(&f.str("status")?)
                    .ok_or(FrameError::Invalid("status"))?,
                conns: f.opt_u64("conns")?,
            },
            "message" => ServerFrame::Message {
                from: f.opt_str("from")?,
                channel: f.opt_str("channel")?,
                seq: f.opt_u64("seq")?,
                epoch: f.opt_str("epoch")?,
                data: f.value("data")?,
            },
            "presence" => presence(f)?,
            "pong" => ServerFrame::Pong {
                id: f.opt_str("id")?,
            },
            "error" => ServerFrame::Error {
                id: f.opt_str("id")?,
                code: error_code(&f.str("code")?).ok_or(FrameError::Invalid("code"))?,
                message: f.opt_str("message")?.unwrap_or_default(),
            },
            other => return Err(FrameError::UnknownOp(other.to_string())),
        })
    }

    /// The `id` the reply carries, if any (messages have none).
    pub fn id(&self) -> Option<&str> {
        match self {
            ServerFrame::Ready { id, .. }
            | ServerFrame::Ack { id, .. }
            | ServerFrame::PresenceUsers { id, .. }
            | ServerFrame::PresenceChannel { id, .. }
            | ServerFrame::Pong { id }
            | ServerFrame::Error { id, .. } => id.as_deref(),
            ServerFrame::Message { .. } => None,
        }
    }
}

/// The two shapes of a `presence` reply.
fn presence(mut f: Fields<'_>) -> Result<ServerFrame<'_>, FrameError> {
    let id = f.opt_str("id")?;
    if let Some(online) = f.0.remove("online") {
        let BorrowedValue::Object(map) = online else {
            return Err(FrameError::Invalid("online"));
        };
        let online = map
            .into_iter()
            .map(|(user, v)| v.as_bool().map(|b| (user, b)))
            .collect::<Option<Vec<_>>>()
            .ok_or(FrameError::Invalid("online"))?;
        return Ok(ServerFrame::PresenceUsers { id, online });
    }
    let channel = f.str("channel")?;
    let BorrowedValue::Array(list) = f.value("users")? else {
        return Err(FrameError::Invalid("users"));
    };
    let users = list
        .into_iter()
        .map(|v| match v {
            BorrowedValue::String(s) => Some(s),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(FrameError::Invalid("users"))?;
    Ok(ServerFrame::PresenceChannel {
        id,
        channel,
        users,
        count: f.u64("count")?,
    })
}

#[cfg(test)]
mod tests;
