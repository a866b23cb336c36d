//! A Pusher client's frame, from parsed JSON to effect: `pusher:ping`, `pusher:subscribe`,
//! `pusher:unsubscribe` (client events and sign-in come with presence).
//!
//! Called from the connection's task with the shard state borrowed, like protocol v1's dispatch.
//! Every outcome is a frame queued to the connection (pong, subscription succeeded or refused, an
//! error) or a close; nothing a client sends can panic the shard.

use std::sync::Arc;

use simd_json::{BorrowedValue, prelude::*};

use super::{
    frames,
    names::{self, Kind},
    signature,
};
use crate::{
    ids::ConnId,
    messages::ReplyTo,
    route,
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
            Some(d) if d.is_object() => subscribe(shard, st, conn, d, now),
            Some(BorrowedValue::String(s)) => {
                // Some older clients send `data` as a JSON string.
                let mut bytes = s.as_bytes().to_vec();
                match simd_json::to_borrowed_value(&mut bytes) {
                    Ok(d) if d.is_object() => subscribe(shard, st, conn, &d, now),
                    _ => error(st, conn, "pusher:subscribe needs data.channel", now),
                }
            }
            _ => error(st, conn, "pusher:subscribe needs data.channel", now),
        },
        "pusher:unsubscribe" => {
            let channel = data.and_then(|d| d.get("channel")).and_then(|c| c.as_str());
            match channel {
                Some(channel) => unsubscribe(shard, st, conn, channel, now),
                None => error(st, conn, "pusher:unsubscribe needs data.channel", now),
            }
        }
        other if other.starts_with("client-") => error(
            st,
            conn,
            "client events are not supported on this connection yet",
            now,
        ),
        _ => error(st, conn, "unknown event", now),
    }
}

/// `pusher:subscribe`: checks the name and, for private channels, the signature; then joins.
fn subscribe(shard: &Shard, st: &mut ShardState, conn: ConnId, data: &BorrowedValue<'_>, now: u64) {
    let Some(channel) = data.get("channel").and_then(|c| c.as_str()) else {
        return error(st, conn, "pusher:subscribe needs data.channel", now);
    };
    if !names::channel_ok(channel) {
        let frame = frames::subscription_error(channel, 400, "invalid channel name");
        st.conns.enqueue(conn, frame, now);
        return;
    }
    let kind = Kind::of(channel);
    if kind == Kind::Presence {
        let frame = frames::subscription_error(
            channel,
            501,
            "presence channels are not served by this gateway version",
        );
        st.conns.enqueue(conn, frame, now);
        return;
    }
    let socket_id = super::conn::socket_id(shard, conn);
    let Some(c) = st.conns.get_mut(conn) else {
        return;
    };
    let Some(p) = &c.pusher else {
        return;
    };
    if kind.needs_auth() {
        let auth = data.get("auth").and_then(|a| a.as_str()).unwrap_or("");
        let app = &p.app;
        if !signature::verify_channel_auth(&app.key, &app.secret, &socket_id, channel, None, auth) {
            shard.metrics.forbidden("subscribe");
            let frame = frames::subscription_error(channel, 401, "invalid signature");
            st.conns.enqueue(conn, frame, now);
            return;
        }
    }
    let internal: Arc<str> = Arc::from(names::internal(&p.app.id, channel));
    let anonymous = p.anonymous.clone();
    if c.subs.contains(&internal) {
        st.conns
            .enqueue(conn, frames::subscription_succeeded(channel), now);
        return;
    }
    if c.subs.len() >= shard.config.max_subscriptions {
        let frame = frames::subscription_error(channel, 429, "subscription limit reached");
        st.conns.enqueue(conn, frame, now);
        return;
    }
    c.subs.push(internal.clone());
    let ack = ReplyTo {
        shard: shard.id,
        conn,
        id: None,
    };
    route::subscribed(shard, st, internal, anonymous, ack, None, now);
}

/// `pusher:unsubscribe`: leaves the channel if subscribed (no reply, as Pusher).
fn unsubscribe(shard: &Shard, st: &mut ShardState, conn: ConnId, channel: &str, now: u64) {
    let Some(c) = st.conns.get_mut(conn) else {
        return;
    };
    let Some(p) = &c.pusher else {
        return;
    };
    let internal = names::internal(&p.app.id, channel);
    let anonymous = p.anonymous.clone();
    let Some(pos) = c.subs.iter().position(|s| **s == *internal) else {
        return;
    };
    let channel = c.subs.swap_remove(pos);
    route::unsubscribed(shard, st, channel, anonymous, conn, now);
}

/// Queues a `pusher:error` without a code (the connection stays open).
fn error(st: &mut ShardState, conn: ConnId, message: &str, now: u64) {
    st.conns.enqueue(conn, frames::error(None, message), now);
}
