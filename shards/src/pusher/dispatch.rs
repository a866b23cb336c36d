//! A Pusher client's frame, from parsed JSON to effect: `pusher:ping`, `pusher:subscribe`,
//! `pusher:unsubscribe`, `pusher:signin` and `client-*` events, each handed to the module that owns
//! it.
//!
//! Called from the connection's task with the shard state borrowed, like protocol v1's dispatch.
//! Every outcome is a frame queued to the connection (pong, subscription succeeded or refused, an
//! error) or a close; nothing a client sends can panic the shard.

use simd_json::{BorrowedValue, prelude::*};

use super::frames;
use crate::{
    ids::ConnId,
    shard::{Shard, ShardState},
};

/// Handles one complete data message from the Pusher connection `conn`.
pub fn on_message(shard: &Shard, st: &mut ShardState, conn: ConnId, payload: &mut [u8], now: u64) {
    let Some(c) = st.conns.get_mut(conn) else {
        return;
    };
    if !c.bucket.take(now) {
        shard.metrics.rate_limited.increment(1);
        let frame = frames::error(None, "message rate over the limit; frame dropped");
        st.conns.enqueue(conn, frame, now);
        return;
    }
    let Ok(value) = simd_json::to_borrowed_value(payload) else {
        return error(st, conn, "malformed JSON", now);
    };
    let Some(event) = value.get("event").and_then(|e| e.as_str()) else {
        return error(st, conn, "a message needs an \"event\" string", now);
    };
    let data = value.get("data");
    match event {
        "pusher:ping" => {
            st.conns.enqueue(conn, frames::pong(), now);
        }
        "pusher:pong" => {}
        "pusher:subscribe" => match data {
            Some(d) if d.is_object() => super::subscribe::subscribe(shard, st, conn, d, now),
            Some(BorrowedValue::String(s)) => {
                // Some older clients send `data` as a JSON string.
                let mut bytes = s.as_bytes().to_vec();
                match simd_json::to_borrowed_value(&mut bytes) {
                    Ok(d) if d.is_object() => super::subscribe::subscribe(shard, st, conn, &d, now),
                    _ => error(st, conn, "pusher:subscribe needs data.channel", now),
                }
            }
            _ => error(st, conn, "pusher:subscribe needs data.channel", now),
        },
        "pusher:unsubscribe" => {
            let channel = data.and_then(|d| d.get("channel")).and_then(|c| c.as_str());
            match channel {
                Some(channel) => super::subscribe::unsubscribe(shard, st, conn, channel, now),
                None => error(st, conn, "pusher:unsubscribe needs data.channel", now),
            }
        }
        "pusher:signin" => match data {
            Some(d) => super::signin::signin(shard, st, conn, d, now),
            None => error(st, conn, "pusher:signin needs data", now),
        },
        other if other.starts_with("client-") => {
            let channel = value.get("channel").and_then(|c| c.as_str());
            match (channel, data) {
                (Some(channel), Some(data)) => {
                    super::client_events::send(shard, st, conn, (other, channel, data), now)
                }
                _ => error(st, conn, "a client event needs a channel and data", now),
            }
        }
        _ => error(st, conn, "unknown event", now),
    }
}

/// Queues a `pusher:error` without a code (the connection stays open).
pub(super) fn error(st: &mut ShardState, conn: ConnId, message: &str, now: u64) {
    st.conns.enqueue(conn, frames::error(None, message), now);
}
