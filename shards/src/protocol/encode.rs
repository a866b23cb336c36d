//! Server frames of protocol v1, written straight into WebSocket text frames.
//!
//! Each function returns a complete frame as `Bytes`: a message is encoded once, at the shard where it
//! enters, and every recipient (on any shard) gets a clone of the handle.

use bytes::{BufMut, Bytes, BytesMut};
use simd_json::{BorrowedValue, prelude::Writable};

use super::ErrorCode;
use crate::ws::encode::FrameBuilder;

/// Appends `s` as a JSON string literal.
pub fn write_json_str(out: &mut BytesMut, s: &str) {
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.put_u8(HEX[(b >> 4) as usize]);
            out.put_u8(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.put_u8(b'"');
}

/// Starts a frame `{"op":"<op>"` with the `id` when there is one.
fn start(op: &str, id: Option<&str>, hint: usize) -> FrameBuilder {
    let mut b = FrameBuilder::with_capacity(32 + op.len() + hint);
    let p = b.payload();
    p.extend_from_slice(b"{\"op\":\"");
    p.extend_from_slice(op.as_bytes());
    p.put_u8(b'"');
    if let Some(id) = id {
        p.extend_from_slice(b",\"id\":");
        write_json_str(p, id);
    }
    b
}

/// Appends `,"key":"value"`.
fn field_str(p: &mut BytesMut, key: &str, value: &str) {
    p.extend_from_slice(b",\"");
    p.extend_from_slice(key.as_bytes());
    p.extend_from_slice(b"\":");
    write_json_str(p, value);
}

/// Appends `,"key":n`.
fn field_num(p: &mut BytesMut, key: &str, n: u64) {
    p.extend_from_slice(b",\"");
    p.extend_from_slice(key.as_bytes());
    p.extend_from_slice(b"\":");
    p.extend_from_slice(n.to_string().as_bytes());
}

/// Appends `,"data":<value>`.
fn field_data(p: &mut BytesMut, data: &BorrowedValue<'_>) {
    p.extend_from_slice(b",\"data\":");
    let mut w = p.writer();
    // Writing into memory cannot fail.
    let _ = data.write(&mut w);
}

/// Closes the object and seals the frame.
fn finish(mut b: FrameBuilder) -> Bytes {
    b.payload().put_u8(b'}');
    b.finish_text()
}

/// The reply to `identify`. `cluster` (cluster mode only): `"ok"` once the connection's presence is
/// confirmed in Redis (a message sent to the user from any node from now on reaches it), `"degraded"`
/// when Redis cannot be reached (this node's traffic only).
pub fn ready(
    id: Option<&str>,
    user: &str,
    session: &str,
    node: &str,
    (shard, heartbeat_ms): (usize, u64),
    cluster: Option<&str>,
) -> Bytes {
    let mut b = ready_fields(id, user, session, node, shard, heartbeat_ms, 24);
    if let Some(state) = cluster {
        field_str(b.payload(), "cluster", state);
    }
    finish(b)
}

/// `ready` up to its `heartbeat_ms`, with room for `more` bytes of further fields.
fn ready_fields(
    id: Option<&str>,
    user: &str,
    session: &str,
    node: &str,
    shard: usize,
    heartbeat_ms: u64,
    more: usize,
) -> FrameBuilder {
    let mut b = start(
        "ready",
        id,
        user.len() + session.len() + node.len() + 64 + more,
    );
    let p = b.payload();
    field_str(p, "user", user);
    field_str(p, "session", session);
    field_str(p, "node", node);
    field_num(p, "shard", shard as u64);
    field_num(p, "heartbeat_ms", heartbeat_ms);
    b
}

/// The identify reply to a resume: `ready` plus `resumed`, the stream position the client is at once
/// it has read the replay (`epoch`, `seq`), the number of messages `replayed`, and on `resumed:false`
/// the `reason`.
pub fn ready_resumed(
    id: Option<&str>,
    user: &str,
    session: &str,
    node: &str,
    shard: usize,
    heartbeat_ms: u64,
    outcome: &crate::history::Outcome,
) -> Bytes {
    let mut b = ready_fields(id, user, session, node, shard, heartbeat_ms, 96);
    resume_fields(b.payload(), outcome);
    finish(b)
}

/// The `subscribed` ack of a subscribe with `since`: the outcome of resuming the channel's stream
/// (the replayed publications follow it).
pub fn subscribed_resumed(id: Option<&str>, outcome: &crate::history::Outcome) -> Bytes {
    let mut b = start("ack", id, 120);
    field_str(b.payload(), "status", "subscribed");
    resume_fields(b.payload(), outcome);
    finish(b)
}

/// `"resumed":…` and, on a gap, `"reason":…`, then the stream's `epoch`, `seq` and `replayed`.
fn resume_fields(p: &mut BytesMut, outcome: &crate::history::Outcome) {
    p.extend_from_slice(if outcome.gap.is_none() {
        b",\"resumed\":true"
    } else {
        b",\"resumed\":false"
    });
    if let Some(gap) = outcome.gap {
        field_str(p, "reason", gap.as_str());
    }
    match &outcome.epoch {
        Some(epoch) => field_str(p, "epoch", epoch),
        None => p.extend_from_slice(b",\"epoch\":null"),
    }
    field_num(p, "seq", outcome.seq);
    field_num(p, "replayed", outcome.replayed);
}

/// An ack; `conns` is present for send and publish.
pub fn ack(id: Option<&str>, status: &str, conns: Option<u64>) -> Bytes {
    let mut b = start("ack", id, 40);
    field_str(b.payload(), "status", status);
    if let Some(n) = conns {
        field_num(b.payload(), "conns", n);
    }
    finish(b)
}

/// A direct message as its recipients see it.
pub fn direct_message(from: &str, data: &BorrowedValue<'_>) -> Bytes {
    let mut b = start("message", None, from.len() + 64);
    field_str(b.payload(), "from", from);
    field_data(b.payload(), data);
    finish(b)
}

/// A channel message as its subscribers see it.
pub fn channel_message(channel: &str, from: &str, data: &BorrowedValue<'_>) -> Bytes {
    let mut b = start("message", None, channel.len() + from.len() + 64);
    field_str(b.payload(), "channel", channel);
    field_str(b.payload(), "from", from);
    field_data(b.payload(), data);
    finish(b)
}

/// A message a backend injected (HTTP API): no `from`; `channel` for a publish; `data_json` is JSON text
/// the caller has already validated, copied as is.
pub fn backend_message(channel: Option<&str>, data_json: &str) -> Bytes {
    let mut b = start("message", None, data_json.len() + 64);
    if let Some(channel) = channel {
        field_str(b.payload(), "channel", channel);
    }
    b.payload().extend_from_slice(b",\"data\":");
    b.payload().extend_from_slice(data_json.as_bytes());
    finish(b)
}

/// The reply to a presence query by users.
pub fn presence_users<'a>(
    id: Option<&str>,
    online: impl IntoIterator<Item = (&'a str, bool)>,
) -> Bytes {
    let mut b = start("presence", id, 128);
    let p = b.payload();
    p.extend_from_slice(b",\"online\":{");
    for (i, (user, on)) in online.into_iter().enumerate() {
        if i > 0 {
            p.put_u8(b',');
        }
        write_json_str(p, user);
        p.extend_from_slice(if on { b":true" } else { b":false" });
    }
    p.put_u8(b'}');
    finish(b)
}

/// The reply to a presence query by channel: the distinct users (sorted) and their count.
pub fn presence_channel(id: Option<&str>, channel: &str, users: &[&str]) -> Bytes {
    let mut b = start("presence", id, channel.len() + users.len() * 16 + 32);
    let p = b.payload();
    field_str(p, "channel", channel);
    p.extend_from_slice(b",\"users\":[");
    for (i, user) in users.iter().enumerate() {
        if i > 0 {
            p.put_u8(b',');
        }
        write_json_str(p, user);
    }
    p.put_u8(b']');
    field_num(p, "count", users.len() as u64);
    finish(b)
}

/// The reply to `ping`.
pub fn pong(id: Option<&str>) -> Bytes {
    finish(start("pong", id, 0))
}

/// An error frame.
pub fn error(id: Option<&str>, code: ErrorCode, message: &str) -> Bytes {
    let mut b = start("error", id, message.len() + 32);
    field_str(b.payload(), "code", code.as_str());
    field_str(b.payload(), "message", message);
    finish(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON payload of a frame built here (all are short enough for a 2- or 4-byte header).
    fn json(frame: &Bytes) -> serde_json::Value {
        let start = if frame[1] == 126 { 4 } else { 2 };
        assert_eq!(frame[0], 0x81);
        serde_json::from_slice(&frame[start..]).expect("valid JSON")
    }

    #[test]
    fn frames_match_the_protocol() {
        let r = json(&ready(Some("i1"), "alice", "00ab", "n1", (1, 25000), None));
        assert_eq!(
            r,
            serde_json::json!({"op":"ready","id":"i1","user":"alice","session":"00ab","node":"n1","shard":1,"heartbeat_ms":25000})
        );
        assert_eq!(
            json(&ack(Some("m1"), "delivered", Some(2))),
            serde_json::json!({"op":"ack","id":"m1","status":"delivered","conns":2})
        );
        assert_eq!(
            json(&ack(None, "subscribed", None)),
            serde_json::json!({"op":"ack","status":"subscribed"})
        );
        let mut data = br#"{"text":"hi \"there\"","n":[1,2.5,null]}"#.to_vec();
        let v = simd_json::to_borrowed_value(&mut data).unwrap();
        assert_eq!(
            json(&direct_message("al\"ice", &v)),
            serde_json::json!({"op":"message","from":"al\"ice","data":{"text":"hi \"there\"","n":[1,2.5,null]}})
        );
        assert_eq!(
            json(&channel_message("room:1", "bob", &v))["channel"],
            serde_json::json!("room:1")
        );
        assert_eq!(
            json(&presence_users(
                Some("q"),
                [("bob", true), ("carol", false)]
            )),
            serde_json::json!({"op":"presence","id":"q","online":{"bob":true,"carol":false}})
        );
        assert_eq!(
            json(&presence_channel(None, "c", &["a", "b"])),
            serde_json::json!({"op":"presence","channel":"c","users":["a","b"],"count":2})
        );
        assert_eq!(
            json(&pong(Some("x"))),
            serde_json::json!({"op":"pong","id":"x"})
        );
        assert_eq!(
            json(&error(None, ErrorCode::RateLimited, "slow down")),
            serde_json::json!({"op":"error","code":"rate_limited","message":"slow down"})
        );
    }

    #[test]
    fn backend_messages_carry_raw_data_and_no_from() {
        assert_eq!(
            json(&backend_message(None, r#"{"a":[1,2]}"#)),
            serde_json::json!({"op":"message","data":{"a":[1,2]}})
        );
        assert_eq!(
            json(&backend_message(Some("room"), "null")),
            serde_json::json!({"op":"message","channel":"room","data":null})
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = BytesMut::new();
        write_json_str(&mut out, "a\u{1}b\n\"\\é");
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\u{1}b\n\"\\é");
    }
}
