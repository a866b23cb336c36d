//! Server frames of the Pusher protocol, written straight into WebSocket text frames.
//!
//! Every frame is `{"event":..,"channel":..,"data":..}`. Pusher encodes most `data` as a JSON string
//! holding JSON (pusher-js parses it back); `pusher:error` and `pusher:subscription_error` carry an
//! object. As in protocol v1, an event is encoded once where it enters and every subscriber gets a
//! clone of the same `Bytes`.

use bytes::{BufMut, Bytes, BytesMut};
use simd_json::{BorrowedValue, prelude::Writable};

use crate::{
    protocol::encode::write_json_str,
    ws::{CloseReason, encode::FrameBuilder},
};

/// Starts `{"event":"<event>"` and, with a channel, `,"channel":"<channel>"`.
fn start(event: &str, channel: Option<&str>, hint: usize) -> FrameBuilder {
    let mut b = FrameBuilder::with_capacity(32 + event.len() + hint);
    let p = b.payload();
    p.extend_from_slice(b"{\"event\":");
    write_json_str(p, event);
    if let Some(channel) = channel {
        p.extend_from_slice(b",\"channel\":");
        write_json_str(p, channel);
    }
    b
}

/// Closes the object and seals the frame.
fn finish(mut b: FrameBuilder) -> Bytes {
    b.payload().put_u8(b'}');
    b.finish_text()
}

/// `pusher:connection_established`: the socket id and the activity timeout (seconds) after which a
/// silent client should ping.
pub fn connection_established(socket_id: &str, activity_timeout_s: u64) -> Bytes {
    let inner =
        format!("{{\"socket_id\":\"{socket_id}\",\"activity_timeout\":{activity_timeout_s}}}");
    let mut b = start("pusher:connection_established", None, inner.len() + 16);
    b.payload().extend_from_slice(b",\"data\":");
    write_json_str(b.payload(), &inner);
    finish(b)
}

/// `pusher:pong` as a text frame (FIN + text, 35-byte payload): shared, never allocated.
const PONG: &[u8] = b"\x81\x23{\"event\":\"pusher:pong\",\"data\":\"{}\"}";
/// `pusher:ping` as a text frame: shared, never allocated (every idle socket gets one per heartbeat).
const PING: &[u8] = b"\x81\x23{\"event\":\"pusher:ping\",\"data\":\"{}\"}";

/// `pusher:pong`, the answer to a client's `pusher:ping`.
pub fn pong() -> Bytes {
    Bytes::from_static(PONG)
}

/// `pusher:ping`, the server's heartbeat (the client answers `pusher:pong`).
pub fn ping() -> Bytes {
    Bytes::from_static(PING)
}

/// `pusher:error` with a code (`None`: a request error that ends nothing) and a message.
pub fn error(code: Option<u16>, message: &str) -> Bytes {
    let mut b = start("pusher:error", None, message.len() + 40);
    let p = b.payload();
    p.extend_from_slice(b",\"data\":{\"code\":");
    match code {
        Some(code) => p.extend_from_slice(code.to_string().as_bytes()),
        None => p.extend_from_slice(b"null"),
    }
    p.extend_from_slice(b",\"message\":");
    write_json_str(p, message);
    p.put_u8(b'}');
    finish(b)
}

/// `pusher_internal:subscription_succeeded` for a public or private channel (`data` `"{}"`).
pub fn subscription_succeeded(channel: &str) -> Bytes {
    let mut b = start("pusher_internal:subscription_succeeded", Some(channel), 16);
    b.payload().extend_from_slice(b",\"data\":\"{}\"");
    finish(b)
}

/// `pusher:subscription_error`: the subscription to `channel` is refused with an HTTP-like `status`.
pub fn subscription_error(channel: &str, status: u16, message: &str) -> Bytes {
    let mut b = start(
        "pusher:subscription_error",
        Some(channel),
        message.len() + 64,
    );
    let p = b.payload();
    p.extend_from_slice(b",\"data\":{\"type\":\"AuthError\",\"error\":");
    write_json_str(p, message);
    p.extend_from_slice(b",\"status\":");
    p.extend_from_slice(status.to_string().as_bytes());
    p.put_u8(b'}');
    finish(b)
}

/// An event on a channel. `data` is copied as the JSON value it is: the server SDKs send a string
/// (JSON they encoded), which pusher-js decodes; other JSON is relayed as given.
pub fn event(event: &str, channel: &str, data: &BorrowedValue<'_>, user_id: Option<&str>) -> Bytes {
    let mut b = start(event, Some(channel), 64);
    let p = b.payload();
    p.extend_from_slice(b",\"data\":");
    write_value(p, data);
    if let Some(user_id) = user_id {
        p.extend_from_slice(b",\"user_id\":");
        write_json_str(p, user_id);
    }
    finish(b)
}

/// Appends `value` as JSON.
fn write_value(p: &mut BytesMut, value: &BorrowedValue<'_>) {
    let mut w = p.writer();
    // Writing into memory cannot fail.
    let _ = value.write(&mut w);
}

/// The close frame of an open Pusher connection ending for `reason`: the codes pusher-js acts on
/// (4200: reconnect now; 4201: pong not received; 4100: back off, then reconnect; 4009: refused).
pub fn close_frame(reason: CloseReason) -> Bytes {
    let code = match reason {
        CloseReason::Restart | CloseReason::GoingAway => 4200,
        CloseReason::HeartbeatTimeout => 4201,
        CloseReason::SlowConsumer | CloseReason::OverCapacity | CloseReason::IpLimit => 4100,
        CloseReason::Disconnected | CloseReason::Policy | CloseReason::TokenExpired => 4009,
        other => other.code(),
    };
    let text = reason.text().as_bytes();
    let mut b = FrameBuilder::with_capacity(2 + text.len());
    b.payload().extend_from_slice(&code.to_be_bytes());
    b.payload().extend_from_slice(text);
    b.finish(tungstenite::protocol::frame::coding::OpCode::Control(
        tungstenite::protocol::frame::coding::Control::Close,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON payload of an unmasked server text frame.
    fn json(frame: &Bytes) -> serde_json::Value {
        let len = frame[1] & 0x7f;
        let start = match len {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        serde_json::from_slice(&frame[start..]).expect("valid JSON")
    }

    #[test]
    fn frames_are_what_pusher_js_reads() {
        let f = json(&connection_established("12.34", 25));
        assert_eq!(f["event"], "pusher:connection_established");
        let data: serde_json::Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["socket_id"], "12.34");
        assert_eq!(data["activity_timeout"], 25);
        assert_eq!(json(&pong())["data"], "{}");
        assert_eq!(json(&ping())["event"], "pusher:ping");
        let e = json(&error(Some(4001), "no \"app\""));
        assert_eq!(e["data"]["code"], 4001);
        assert_eq!(e["data"]["message"], "no \"app\"");
        assert!(json(&error(None, "x"))["data"]["code"].is_null());
        let s = json(&subscription_succeeded("private-a"));
        assert_eq!(s["channel"], "private-a");
        let s = json(&subscription_error("private-a", 401, "bad"));
        assert_eq!(s["data"]["status"], 401);
        assert_eq!(s["data"]["type"], "AuthError");
    }

    #[test]
    fn the_static_heartbeat_frames_are_what_the_builder_writes() {
        for (event, frame) in [("pusher:ping", ping()), ("pusher:pong", pong())] {
            let mut b = start(event, None, 16);
            b.payload().extend_from_slice(b",\"data\":\"{}\"");
            assert_eq!(finish(b), frame, "{event}");
        }
    }

    #[test]
    fn events_carry_their_data_as_given() {
        let mut text = br#""{\"a\":1}""#.to_vec();
        let data = simd_json::to_borrowed_value(&mut text).unwrap();
        let e = json(&event("greet", "news", &data, None));
        assert_eq!(e["data"], "{\"a\":1}");
        assert_eq!(e["channel"], "news");
        assert!(e.get("user_id").is_none());
        let mut obj = br#"{"b":[1,2]}"#.to_vec();
        let data = simd_json::to_borrowed_value(&mut obj).unwrap();
        let e = json(&event("client-x", "presence-r", &data, Some("u1")));
        assert_eq!(e["data"]["b"][1], 2);
        assert_eq!(e["user_id"], "u1");
    }
}
