//! Messages that cross shards.
//!
//! Every cross-shard interaction is one of these, pushed into the target's [`crate::inbox::Inbox`].
//! They form a DAG per request (sender → owner → holder, and an ack back to the sender as a separate
//! event carrying a correlation), so no shard ever waits on another. Frames travel as `Bytes`
//! encoded once; names as `Arc<str>` so routing copies no strings.

use std::sync::Arc;

use bytes::Bytes;

pub mod reply;

pub use reply::{Ack, AckSink, Origin, ReplyTo};

use crate::ids::ConnId;

/// Code run on a shard with its state borrowed: the control plane's `invoke_on` (no request cycle: it
/// replies through whatever it captured, never by waiting on another shard).
pub type Invocation =
    Box<dyn FnOnce(&crate::shard::Shard, &mut crate::shard::ShardState, u64) + Send>;

/// A message for a shard: one family per concern, each handled by that concern's module
/// (`crate::route::handle` composes them).
pub enum ShardMsg {
    /// Users: the directory at a user's owner, direct messages, admission.
    User(UserMsg),
    /// Channels: subscriptions at a channel's owner, publishes and their fan-out.
    Channel(ChannelMsg),
    /// Presence queries and their answers.
    Presence(PresenceMsg),
    /// Resumes of user and channel streams.
    History(HistoryMsg),
    /// At a connection's shard: queue a ready-made frame (acks, replies) to `conn`.
    ToConn { conn: ConnId, frame: Bytes },
    /// The node's control of the shard: invocations, shutdown, drain.
    Node(NodeMsg),
}

/// Users' messages ([`crate::route::users::handle`]).
pub enum UserMsg {
    /// At the user's owner: one more connection of `user` on `shard`. The owner also decides the
    /// new connection's admission (the per-user cap; in cluster mode, presence confirmed in Redis)
    /// and answers its shard with [`UserMsg::Admitted`].
    DirAdd {
        user: Arc<str>,
        shard: usize,
        admit: crate::admit::Admit,
    },
    /// At an identifying connection's shard: the owner's verdict on it (`ready`, or refused).
    Admitted {
        conn: ConnId,
        verdict: crate::admit::Verdict,
    },
    /// At the user's owner: one connection of `user` on `shard` is gone.
    DirRemove { user: Arc<str>, shard: usize },
    /// At the user's owner: deliver `frame` to every connection of `to`, then ack `reply`. On a single
    /// node the owner numbers and keeps the message first (history); in cluster mode it hands the
    /// message to the bridge, which numbers it in Redis and delivers it everywhere. `local_only`: a
    /// message from the bridge, already numbered (`seq`, 0: unnumbered), for this node's connections.
    Route {
        to: Arc<str>,
        frame: Bytes,
        reply: Origin,
        local_only: bool,
        seq: u64,
    },
    /// At a holder: deliver `frame` (numbered `seq`, 0: unnumbered) to the local connections of `to`.
    Deliver {
        to: Arc<str>,
        frame: Bytes,
        seq: u64,
    },
    /// At the user's owner: a connection of `user` resumes its stream (after its `DirAdd`); the owner
    /// answers with [`HistoryMsg::UserResumed`].
    Resume {
        user: Arc<str>,
        req: crate::history::ResumeRequest,
    },
}

/// Channels' messages ([`crate::route::channels::handle`]).
pub enum ChannelMsg {
    /// At the channel's owner: one more subscribed connection of `user` on `shard`. In cluster mode
    /// the owner sends the subscribe ack to `ack` once the node listens to the channel's Redis topic.
    /// `since`: the connection subscribed with a position; the owner answers with
    /// [`HistoryMsg::ChannelResumed`] (once the node listens, in cluster mode) instead of an ack.
    Sub {
        channel: Arc<str>,
        user: Arc<str>,
        /// A Pusher presence member's `user_info` (JSON text); `None` for every other subscription.
        info: Option<Arc<str>>,
        shard: usize,
        ack: Option<ReplyTo>,
        since: Option<Box<crate::history::ResumeRequest>>,
    },
    /// At the channel's owner, from the bridge: this node now listens to `channel` across the cluster;
    /// the held subscribe acks go out.
    Ready { channel: Arc<str> },
    /// At the channel's owner: one subscribed connection of `user` on `shard` left.
    Unsub {
        channel: Arc<str>,
        user: Arc<str>,
        shard: usize,
    },
    /// At the channel's owner: fan `frame` out to every subscribing shard, then ack `reply`.
    /// `self_subscribed`: the publishing connection is itself subscribed (excluded from the count).
    /// A channel with history numbers the publication first (in place on a single node, through the
    /// bridge in cluster mode) and delivers it to every subscriber, the publisher included. In cluster
    /// mode the owner then hands the publication to the bridge, unless `local_only` (a publication
    /// from the bridge, numbered `seq` already, or 0: unnumbered).
    Publish {
        channel: Arc<str>,
        frame: Bytes,
        reply: Origin,
        self_subscribed: bool,
        local_only: bool,
        seq: u64,
    },
    /// At a subscribing shard: deliver `frame` (numbered `seq`, 0: unnumbered) to local subscribers of
    /// `channel` except `exclude`.
    Deliver {
        channel: Arc<str>,
        frame: Bytes,
        exclude: Option<ConnId>,
        seq: u64,
    },
}

/// Presence messages ([`crate::route::presence::handle`]).
pub enum PresenceMsg {
    /// At a user owner: which of these users are online. `users` pairs each name with its position
    /// in the original query.
    Query {
        query: u64,
        from: usize,
        users: Vec<(usize, Arc<str>)>,
    },
    /// Back at the asking shard: answers to [`PresenceMsg::Query`].
    Answer {
        query: u64,
        online: Vec<(usize, bool)>,
    },
    /// At the channel's owner: who is subscribed; the owner answers `reply` with a presence frame.
    Channel { channel: Arc<str>, reply: ReplyTo },
}

/// History messages: the answers to resumes, at the resuming connection's shard
/// ([`crate::history::resume::handle`]).
pub enum HistoryMsg {
    /// At the resuming connection's shard: the outcome and the frames to replay, in order.
    UserResumed {
        conn: ConnId,
        outcome: crate::history::Outcome,
        frames: Vec<Bytes>,
    },
    /// At the subscribing connection's shard: the outcome of its subscribe with `since` and the
    /// publications to replay, in order.
    ChannelResumed {
        conn: ConnId,
        channel: Arc<str>,
        outcome: crate::history::Outcome,
        frames: Vec<Bytes>,
    },
}

/// The node's control messages ([`crate::shard::node::handle`]).
pub enum NodeMsg {
    /// Run control-plane code on this shard (presence lookups, disconnects, closes from the HTTP API).
    Invoke(Invocation),
    /// Stop accepting and close every connection with 1001.
    Shutdown,
    /// Stop accepting new connections (a drain's first step, after the load balancer's delay).
    StopAccepting,
    /// Close this shard's connections in paced batches with 1012, then finish.
    Drain(crate::drain::DrainPlan),
    /// Test payload for the inbox itself.
    #[doc(hidden)]
    Probe(u64),
}

impl From<UserMsg> for ShardMsg {
    fn from(m: UserMsg) -> ShardMsg {
        ShardMsg::User(m)
    }
}

impl From<ChannelMsg> for ShardMsg {
    fn from(m: ChannelMsg) -> ShardMsg {
        ShardMsg::Channel(m)
    }
}

impl From<PresenceMsg> for ShardMsg {
    fn from(m: PresenceMsg) -> ShardMsg {
        ShardMsg::Presence(m)
    }
}

impl From<HistoryMsg> for ShardMsg {
    fn from(m: HistoryMsg) -> ShardMsg {
        ShardMsg::History(m)
    }
}

impl From<NodeMsg> for ShardMsg {
    fn from(m: NodeMsg) -> ShardMsg {
        ShardMsg::Node(m)
    }
}

impl std::fmt::Debug for ShardMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardMsg::User(m) => m.fmt(f),
            ShardMsg::Channel(m) => m.fmt(f),
            ShardMsg::Presence(m) => m.fmt(f),
            ShardMsg::History(m) => m.fmt(f),
            ShardMsg::ToConn { conn, .. } => write!(f, "ToConn({conn:?})"),
            ShardMsg::Node(m) => m.fmt(f),
        }
    }
}

impl std::fmt::Debug for UserMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserMsg::DirAdd { user, shard, .. } => write!(f, "DirAdd({user}, {shard})"),
            UserMsg::Admitted { conn, verdict } => write!(f, "Admitted({conn:?}, {verdict:?})"),
            UserMsg::DirRemove { user, shard } => write!(f, "DirRemove({user}, {shard})"),
            UserMsg::Route { to, reply, .. } => write!(f, "RouteUser({to}, {reply:?})"),
            UserMsg::Deliver { to, seq, .. } => write!(f, "DeliverUser({to}, {seq})"),
            UserMsg::Resume { user, req } => write!(f, "ResumeUser({user}, {req:?})"),
        }
    }
}

impl std::fmt::Debug for ChannelMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelMsg::Sub {
                channel,
                user,
                shard,
                ..
            } => write!(f, "ChanSub({channel}, {user}, {shard})"),
            ChannelMsg::Ready { channel } => write!(f, "ChanReady({channel})"),
            ChannelMsg::Unsub {
                channel,
                user,
                shard,
            } => write!(f, "ChanUnsub({channel}, {user}, {shard})"),
            ChannelMsg::Publish { channel, reply, .. } => {
                write!(f, "RoutePublish({channel}, {reply:?})")
            }
            ChannelMsg::Deliver { channel, .. } => write!(f, "DeliverChannel({channel})"),
        }
    }
}

impl std::fmt::Debug for PresenceMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PresenceMsg::Query { query, from, .. } => write!(f, "PresenceQuery({query}, {from})"),
            PresenceMsg::Answer { query, .. } => write!(f, "PresenceAnswer({query})"),
            PresenceMsg::Channel { channel, .. } => write!(f, "ChannelPresence({channel})"),
        }
    }
}

impl std::fmt::Debug for HistoryMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryMsg::UserResumed { conn, outcome, .. } => {
                write!(f, "Resumed({conn:?}, {outcome:?})")
            }
            HistoryMsg::ChannelResumed {
                conn,
                channel,
                outcome,
                ..
            } => write!(f, "ChanResumed({conn:?}, {channel}, {outcome:?})"),
        }
    }
}

impl std::fmt::Debug for NodeMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeMsg::Invoke(_) => f.write_str("Invoke"),
            NodeMsg::Shutdown => f.write_str("Shutdown"),
            NodeMsg::StopAccepting => f.write_str("StopAccepting"),
            NodeMsg::Drain(plan) => write!(f, "Drain({plan:?})"),
            NodeMsg::Probe(v) => write!(f, "Probe({v})"),
        }
    }
}

impl ShardMsg {
    /// True for messages that may be dropped when the target is overloaded (payload deliveries);
    /// false for state changes that must arrive for the tables to stay right.
    pub fn droppable(&self) -> bool {
        matches!(
            self,
            ShardMsg::User(UserMsg::Deliver { .. }) | ShardMsg::Channel(ChannelMsg::Deliver { .. })
        )
    }
}
