//! `pusher:subscribe` and `pusher:unsubscribe`: the channel's name and kind decide what a socket must
//! show (nothing, a channel signature, or a signature over its presence `channel_data`), and under
//! which name it is counted (its app's anonymous name, or its member name on a presence channel).

use std::sync::Arc;

use simd_json::{BorrowedValue, prelude::*};

use super::{
    frames,
    names::{self, Kind},
    presence, signature,
};
use crate::{
    ids::ConnId,
    messages::ReplyTo,
    route,
    shard::{Shard, ShardState},
};

/// The channel a signed-in user's own events arrive on (`#server-to-user-{id}`).
pub const SERVER_TO_USER: &str = "#server-to-user-";

/// Subscribes the socket to `data.channel`, or tells it why not.
pub fn subscribe(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    data: &BorrowedValue<'_>,
    now: u64,
) {
    let Some(channel) = data.get("channel").and_then(|c| c.as_str()) else {
        return super::dispatch::error(st, conn, "pusher:subscribe needs data.channel", now);
    };
    let refuse = |st: &mut ShardState, status, message| {
        let frame = frames::subscription_error(channel, status, message);
        st.conns.enqueue(conn, frame, now);
    };
    if let Some(id) = channel.strip_prefix(SERVER_TO_USER) {
        return server_to_user(st, conn, channel, id, now);
    }
    if !names::channel_ok(channel) {
        return refuse(st, 400, "invalid channel name");
    }
    let kind = Kind::of(channel);
    let socket_id = super::socket::socket_id(shard, conn);
    let Some(c) = st.conns.get_mut(conn) else {
        return;
    };
    let Some(p) = &c.pusher else {
        return;
    };
    let channel_data = data.get("channel_data").and_then(|d| d.as_str());
    let member = match kind {
        Kind::Presence => match channel_data.and_then(presence::parse_channel_data) {
            Some(m) => Some(m),
            None => return refuse(st, 400, "presence needs channel_data with a user_id"),
        },
        _ => None,
    };
    if kind.needs_auth() {
        let auth = data.get("auth").and_then(|a| a.as_str()).unwrap_or("");
        let signed = if kind == Kind::Presence {
            channel_data
        } else {
            None
        };
        let app = &p.app;
        if !signature::verify_channel_auth(&app.key, &app.secret, &socket_id, channel, signed, auth)
        {
            shard.metrics.forbidden("subscribe");
            return refuse(st, 401, "invalid signature");
        }
    }
    let internal: Arc<str> = Arc::from(names::internal(&p.app.id, channel));
    if c.subs.contains(&internal) {
        return refuse(st, 400, "already subscribed");
    }
    if c.subs.len() >= shard.config.max_subscriptions {
        return refuse(st, 429, "subscription limit reached");
    }
    let (user, info) = match member {
        Some((id, info)) => {
            let name: Arc<str> = Arc::from(names::user(&p.app.id, &id));
            (name, Some(Arc::from(info)))
        }
        None => (p.anonymous.clone(), None),
    };
    c.subs.push(internal.clone());
    if info.is_some()
        && let Some(p) = &mut c.pusher
    {
        p.presence.push((internal.clone(), user.clone()));
    }
    let ack = ReplyTo {
        shard: shard.id,
        conn,
        id: None,
    };
    route::subscribed(shard, st, internal, (user, info), ack, None, now);
}

/// `#server-to-user-{id}`: the signed-in user's own channel. Events reach it through the user's
/// routing (every socket of the user, on every node), so the subscription is only acknowledged.
fn server_to_user(st: &mut ShardState, conn: ConnId, channel: &str, id: &str, now: u64) {
    let own = st
        .conns
        .get(conn)
        .and_then(|c| c.pusher.as_ref())
        .and_then(|p| p.user.as_deref())
        .and_then(names::external)
        .is_some_and(|(_, user)| user == id);
    let frame = if own {
        frames::subscription_succeeded(channel)
    } else {
        frames::subscription_error(channel, 403, "sign in as this user first")
    };
    st.conns.enqueue(conn, frame, now);
}

/// Leaves `channel` if subscribed (no reply, as Pusher).
pub fn unsubscribe(shard: &Shard, st: &mut ShardState, conn: ConnId, channel: &str, now: u64) {
    let Some(c) = st.conns.get_mut(conn) else {
        return;
    };
    let Some(p) = &mut c.pusher else {
        return;
    };
    let internal = names::internal(&p.app.id, channel);
    let Some(pos) = c.subs.iter().position(|s| **s == *internal) else {
        return;
    };
    let channel = c.subs.swap_remove(pos);
    let user = p.member_of(&channel);
    route::unsubscribed(shard, st, channel, user, conn, now);
}

/// The owner refused a subscription (a full presence channel): the socket drops it and is told.
pub fn refused(shard: &Shard, st: &mut ShardState, conn: ConnId, channel: &Arc<str>, now: u64) {
    let Some(c) = st.conns.get_mut(conn) else {
        return;
    };
    let pos = c.subs.iter().position(|s| **s == **channel);
    if let Some(pos) = pos {
        c.subs.swap_remove(pos);
    }
    if let Some(p) = &mut c.pusher {
        p.presence.retain(|(ch, _)| ch != channel);
    }
    st.channels.local.remove(channel, conn);
    st.history.resuming.forget_channel(conn, channel);
    shard.metrics.forbidden("subscribe");
    let name = names::external(channel).map_or(&**channel, |(_, c)| c);
    let frame = frames::subscription_error(name, 403, "presence channel is full");
    st.conns.enqueue(conn, frame, now);
}
