//! The data plane's side of cluster mode: what owner shards tell the Redis bridge.
//!
//! The owner shard of a user knows how many connections the user has on this node (its directory sums
//! every shard); the owner shard of a channel knows whether any connection of this node subscribes to it
//! and which users those are. Those are exactly the facts other nodes need, so the owner reports each
//! change through [`ClusterLink`], implemented by the bridge thread in the `gateway` crate. The calls
//! must not block: the bridge queues them and writes to Redis in batches. Without Redis (the embedded
//! default) no link is configured and nothing is reported.
//!
//! Subscribing is the one report with an answer: when this node gains its first subscriber of a
//! channel, the subscribe acks wait until the bridge has subscribed the node to the channel's Redis
//! topic (it answers with [`crate::messages::ChannelMsg::Ready`]), so that a publish made anywhere
//! after a client got its `subscribed` ack reaches that client.

pub mod answer;

use std::sync::Arc;

use bytes::Bytes;

use crate::messages::reply::{Origin, ReplyTo};

/// A client's presence question, answered by this node and completed cluster-wide by the bridge.
#[derive(Debug)]
pub enum PresenceQuery {
    /// Which of `users` are online: each with whether it is online on this node.
    Users {
        users: Vec<(Arc<str>, bool)>,
        reply: ReplyTo,
    },
    /// Who subscribes to `channel`: `users` subscribe on this node.
    Channel {
        channel: Arc<str>,
        users: Vec<Arc<str>>,
        reply: ReplyTo,
    },
    /// The members of the Pusher presence `channel` (member, user_info) for a joining socket's
    /// `subscription_succeeded`: `members` are this node's.
    PusherMembers {
        channel: Arc<str>,
        members: Vec<(Arc<str>, Arc<str>)>,
        reply: ReplyTo,
    },
}

/// Receives the owner shards' reports; implemented by the bridge.
pub trait ClusterLink: Send + Sync {
    /// `user` now has `conns` connections on this node (0: none left).
    fn presence_changed(&self, user: &Arc<str>, conns: u64);
    /// This node now has (`true`) or no longer has (`false`) a subscriber of `channel`. Returns true
    /// when the owner should hold the channel's subscribe acks until `ChannelMsg::Ready` comes back (false:
    /// Redis is down, ack at once; the bridge subscribes when Redis returns).
    fn channel_interest(&self, channel: &Arc<str>, subscribed: bool) -> bool;
    /// `user` now has (`true`) or no longer has (`false`) a subscribed connection to `channel` on this
    /// node: channel presence across the cluster.
    fn channel_member(&self, channel: &Arc<str>, user: &Arc<str>, member: bool);
    /// A direct message to `to` was delivered to `local_conns` connections of this node; the link
    /// forwards it to the other nodes holding `to` and answers `origin` with the total (or with status
    /// `unavailable` when Redis cannot be reached).
    fn forward_user(&self, to: Arc<str>, frame: Bytes, local_conns: u64, origin: Origin);
    /// A publication to `channel` reached `local_conns` subscribers of this node; the link publishes it
    /// to the other nodes and answers `origin` with the total (or status `unavailable`).
    fn forward_publish(&self, channel: Arc<str>, frame: Bytes, local_conns: u64, origin: Origin);
    /// A direct message to `to` with history on: the link numbers it in the user's stream in Redis,
    /// delivers it to every node holding `to` (this one through its owner shard, as a `local_only`
    /// route, when Redis presence says so or `here`: this node's directory holds `to`) and answers
    /// `origin` (`delivered`, or `stored` when no connection got it). Hands the message back when
    /// Redis is down: the owner then delivers it here, unnumbered.
    fn sequence_user(
        &self,
        to: Arc<str>,
        frame: Bytes,
        here: bool,
        origin: Origin,
    ) -> Result<(), (Bytes, Origin)>;
    /// A connection of `user` resumes: the link reads the stream in Redis once this node's presence
    /// for `user` is written, and answers the connection's shard with `HistoryMsg::UserResumed`. Hands the
    /// request back when Redis is down (the owner answers `unavailable`).
    fn resume_user(
        &self,
        user: Arc<str>,
        req: crate::history::ResumeRequest,
    ) -> Result<(), crate::history::ResumeRequest>;
    /// A publication to `channel`, a channel with history: the link numbers it in the channel's
    /// stream in Redis and publishes it to every node listening to the channel (this one included) in
    /// the same step, so every node gets the channel's publications in `seq` order; it answers
    /// `origin` with the subscribers reached. Hands the publication back when Redis is down (the owner
    /// then publishes it here, unnumbered).
    fn sequence_publish(
        &self,
        channel: Arc<str>,
        frame: Bytes,
        origin: Origin,
    ) -> Result<(), (Bytes, Origin)>;
    /// A connection subscribed to `channel` with `since`, and this node listens to the channel: the
    /// link reads the channel's stream in Redis and answers the connection's shard with
    /// `HistoryMsg::ChannelResumed`. Hands the request back when Redis is down.
    fn resume_channel(
        &self,
        channel: Arc<str>,
        req: crate::history::ResumeRequest,
    ) -> Result<(), crate::history::ResumeRequest>;
    /// A connection of `user` identified on this node, which now has `conns` of them (a presence
    /// change, as [`ClusterLink::presence_changed`]): the link answers the connection's shard with
    /// `UserMsg::Admitted` once that presence is written to Redis, so the `ready` that follows
    /// means "reachable from every node". When Redis is down it records the change and hands the
    /// request back (the owner answers degraded at once).
    fn confirm_presence(
        &self,
        user: &Arc<str>,
        conns: u64,
        req: crate::admit::ReadyRequest,
    ) -> Result<(), crate::admit::ReadyRequest>;
    /// Takes a presence query to complete with the other nodes' answers from Redis and reply; hands it
    /// back when Redis is down, and the node then replies from what it knows itself.
    fn query_presence(&self, query: PresenceQuery) -> Result<(), PresenceQuery>;
    /// A Pusher presence `member` joined `channel` on this node with `info` (its first socket here), or
    /// left it (`None`: its last socket here). The link decides across the cluster whether that is the
    /// member's first join or last leave anywhere and, if so, sends `member_added` (not to `joiner`,
    /// the joining socket) or `member_removed` to the channel through its owner shard.
    fn presence_member(
        &self,
        channel: &Arc<str>,
        member: &Arc<str>,
        info: Option<Arc<str>>,
        joiner: Option<ReplyTo>,
    );
    /// Completes a Pusher channel query with the other nodes' entries in Redis and answers its
    /// connection (this node's answer alone when Redis is down).
    fn pusher_query(&self, query: crate::pusher::query::Query);
    /// This node now has `count` sockets subscribed to the app channel `channel` (for the HTTP API's
    /// `subscription_count` across the cluster).
    fn pusher_subscriptions(&self, channel: &Arc<str>, count: u64);
    /// Closes every connection of `user` on the other nodes (a Pusher `terminate_connections`; this
    /// node closes its own). Fire and forget: nothing is answered.
    fn disconnect_remote(&self, user: Arc<str>);
}
