//! A Pusher connection: what its record holds beyond a v1 connection's, how it opens after the
//! upgrade, how its close codes read, and how it leaves its channels.
//!
//! A Pusher socket is a connection of the same shards, table, codec and timers as a v1 one; only its
//! frames differ. It is never identified as a v1 user: it subscribes under its app's anonymous name
//! (one member per channel, whatever the number of sockets), and its socket id names its place in
//! the cluster (node, shard, slot), so an HTTP trigger can exclude it.

use std::sync::Arc;

use bytes::Bytes;

use super::{apps::App, frames, names};
use crate::{
    conn::ratelimit::TokenBucket,
    ids::ConnId,
    shard::{Shard, ShardState},
    ws::{CloseReason, encode::FrameBuilder},
};

/// `client-*` events per second one socket may send (Pusher's own limit); 4301 beyond.
pub const CLIENT_EVENTS_PER_SEC: u32 = 10;

/// Protocol versions served (pusher-js 8 speaks 7).
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// The Pusher part of a connection's record (boxed: a v1 connection pays one pointer for it).
#[derive(Debug)]
pub struct PusherConn {
    /// The app, shared by its connections.
    pub app: Arc<App>,
    /// The app's index in the node's registry (for its connection count).
    pub index: u16,
    /// The app's anonymous subscriber name, under which this socket's subscriptions are counted.
    pub anonymous: Arc<str>,
    /// Presence channels (internal names) and the member name each is counted under.
    pub presence: Vec<(Arc<str>, Arc<str>)>,
    /// The signed-in user (`pusher:signin`), app-scoped; `None` until then.
    pub user: Option<Arc<str>>,
    /// `pusher:signin_success`, held until the user's presence is confirmed in the cluster (so a
    /// sendToUser made anywhere right after it reaches this socket).
    pub signin: Option<Box<Bytes>>,
    /// `client-*` events this socket may send (10 per second by default).
    pub client_events: TokenBucket,
}

impl PusherConn {
    /// The name `channel`'s subscription of this socket is counted under.
    pub fn member_of(&self, channel: &Arc<str>) -> Arc<str> {
        self.presence
            .iter()
            .find(|(c, _)| c == channel)
            .map_or_else(|| self.anonymous.clone(), |(_, m)| m.clone())
    }
}

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
            let socket_id = socket_id(shard, id);
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

/// The socket id of connection `id` on this shard.
pub fn socket_id(shard: &Shard, id: ConnId) -> String {
    let tag = names::node_tag(&shard.config.node_id);
    names::socket_id(tag, shard.id, id.index, id.generation)
}

/// The connection of this node that `socket_id` names, as `(shard, conn)`.
pub fn local_socket(shard: &Shard, socket_id: &str) -> Option<(usize, ConnId)> {
    let (tag, on, index, generation) = names::parse_socket_id(socket_id)?;
    (tag == names::node_tag(&shard.config.node_id) && on < shard.config.shards)
        .then_some((on, ConnId { index, generation }))
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
