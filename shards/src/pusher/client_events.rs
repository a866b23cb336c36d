//! `client-*` events: a socket talking to the other subscribers of a private or presence channel,
//! with no backend in between.
//!
//! Allowed only where Pusher allows them: the app has them on, the channel is private or presence
//! (never public, and never `private-encrypted-`, whose payloads the server cannot vouch for), and the
//! socket is subscribed. They are never echoed to the sender, carry the sender's `user_id` on presence
//! channels, and are limited per socket (10 per second; beyond, `pusher:error` 4301 and the event is
//! dropped). They travel the channel's publish path, so they cross shards and nodes like any event.

use std::sync::Arc;

use simd_json::{BorrowedValue, prelude::*};

use super::{
    frames,
    names::{self, Kind},
};
use crate::{
    ids::ConnId,
    messages::{Origin, ReplyTo},
    route,
    shard::{Shard, ShardState},
};

/// Longest client event name.
const MAX_NAME_BYTES: usize = 200;
/// Largest client event data, as JSON (Pusher's own limit).
const MAX_DATA_BYTES: usize = 10 * 1024;

/// Sends the client event `(event, channel, data)` of `conn`, or tells it why not.
pub fn send(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    (event, channel, data): (&str, &str, &BorrowedValue<'_>),
    now: u64,
) {
    let refuse = |st: &mut ShardState, code, message| {
        st.conns.enqueue(conn, frames::error(code, message), now);
    };
    let Some(c) = st.conns.get_mut(conn) else {
        return;
    };
    let Some(p) = &mut c.pusher else {
        return;
    };
    if !p.app.client_events {
        return refuse(st, None, "client events are disabled for this app");
    }
    if !matches!(Kind::of(channel), Kind::Private | Kind::Presence) {
        return refuse(
            st,
            None,
            "client events are allowed on private and presence channels only",
        );
    }
    if event.len() > MAX_NAME_BYTES {
        return refuse(st, None, "client event name over 200 bytes");
    }
    let internal: Arc<str> = Arc::from(names::internal(&p.app.id, channel));
    if !c.subs.contains(&internal) {
        return refuse(
            st,
            None,
            "subscribe to the channel before sending client events",
        );
    }
    if !p.client_events.take(now) {
        shard.metrics.rate_limited.increment(1);
        return refuse(st, Some(4301), "client event rejected due to rate limit");
    }
    let member = p.member_of(&internal);
    let user_id = (Kind::of(channel) == Kind::Presence)
        .then(|| names::external(&member).map(|(_, id)| id))
        .flatten();
    let frame = frames::event(event, channel, data, user_id);
    if frame.len() > MAX_DATA_BYTES + MAX_NAME_BYTES + channel.len() + 256 {
        return refuse(st, None, "client event data over 10 KB");
    }
    if let Some(sink) = shard
        .config
        .webhooks
        .as_ref()
        .filter(|s| s.wants_client_events())
    {
        let hook = crate::webhooks::Hook::ClientEvent {
            channel: internal.clone(),
            event: Arc::from(event),
            data: Arc::from(data.encode().as_str()),
            socket_id: Arc::from(super::socket::socket_id(shard, conn).as_str()),
            user_id: user_id.map(Arc::from),
        };
        sink.emit(hook);
    }
    let sender = ReplyTo {
        shard: shard.id,
        conn,
        id: None,
    };
    route::publish(shard, st, internal, frame, Origin::Silent(sender), now);
}
