//! A Pusher connection: how it opens after the upgrade and how it leaves its channels. What its
//! record holds beyond a v1 connection's is in [`super::record`], its close frame in [`super::frames`].
//!
//! A Pusher socket is a connection of the same shards, table, codec and timers as a v1 one; only its
//! frames differ. It is never identified as a v1 user: it subscribes under its app's anonymous name
//! (one member per channel, whatever the number of sockets), and its socket id names its place in
//! the cluster (node, shard, slot), so an HTTP trigger can exclude it.

use std::sync::Arc;

use super::{
    apps::App,
    frames,
    record::{CLIENT_EVENTS_PER_SEC, PusherConn},
};
use crate::{
    conn::ratelimit::TokenBucket,
    ids::ConnId,
    shard::{Shard, ShardState},
    ws::CloseReason,
};

/// Protocol versions served (pusher-js 8 speaks 7).
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// Opens a Pusher connection right after its upgrade to `/app/{key}?protocol=..`: refuses it with
/// `pusher:error` and the close code the protocol names, or sends `pusher:connection_established`.
pub fn open(
    shard: &Shard,
    st: &mut ShardState,
    id: ConnId,
    (key, protocol): (&str, Option<&str>),
    now: u64,
) {
    let refused = match check(shard, key, protocol) {
        Ok(app) => {
            let over = st.conns.get(id).is_some_and(|c| c.over_capacity);
            if over || !shard.config.pusher.try_connect(app.0) {
                Err(CloseReason::PusherOverCapacity)
            } else {
                Ok(app)
            }
        }
        Err(reason) => Err(reason),
    };
    match refused {
        Err(reason) => {
            let frame = frames::error(Some(reason.code()), reason.text());
            st.conns.enqueue(id, frame, now);
            st.conns.close(id, reason, now);
        }
        Ok((index, app)) => {
            let anonymous = shard.config.pusher.anonymous(index);
            let socket_id = super::socket::socket_id(shard, id);
            let Some(c) = st.conns.get_mut(id) else {
                return;
            };
            c.pusher = Some(Box::new(PusherConn {
                app,
                index,
                anonymous,
                presence: Vec::new(),
                user: None,
                signin: None,
                client_events: TokenBucket::new(CLIENT_EVENTS_PER_SEC, CLIENT_EVENTS_PER_SEC, now),
            }));
            let timeout = shard.config.heartbeat_interval.as_secs().max(1);
            let frame = frames::connection_established(&socket_id, timeout);
            st.conns.enqueue(id, frame, now);
        }
    }
}

/// The app of `key`, if the request may connect to it.
fn check(shard: &Shard, key: &str, protocol: Option<&str>) -> Result<(u16, Arc<App>), CloseReason> {
    let Some((index, app)) = shard.config.pusher.by_key(key) else {
        return Err(CloseReason::PusherAppUnknown);
    };
    match protocol.map(str::parse::<u32>) {
        None => return Err(CloseReason::PusherProtocolMissing),
        Some(Err(_)) => return Err(CloseReason::PusherProtocolMalformed),
        Some(Ok(v)) if !PROTOCOLS.contains(&v) => {
            return Err(CloseReason::PusherProtocolUnsupported);
        }
        Some(Ok(_)) => {}
    }
    if !app.enabled {
        return Err(CloseReason::PusherAppDisabled);
    }
    Ok((index, app.clone()))
}

/// A Pusher connection is gone: it leaves its channels, and its app's count.
pub fn gone(
    shard: &Shard,
    st: &mut ShardState,
    id: ConnId,
    pusher: PusherConn,
    subs: thin_vec::ThinVec<Arc<str>>,
    now: u64,
) {
    shard.config.pusher.disconnected(pusher.index);
    for channel in subs {
        let user = pusher.member_of(&channel);
        crate::route::unsubscribed(shard, st, channel, user, id, now);
    }
    if let Some(user) = pusher.user {
        // The user's other sockets, here and on other nodes, stay reachable.
        crate::route::conn_gone(shard, st, id, user, thin_vec::ThinVec::new(), now);
    }
}
