//! The data plane's side of cluster mode: what owner shards tell the Redis bridge.
//!
//! The owner shard of a user knows how many connections the user has on this node (its directory sums
//! every shard); the owner shard of a channel knows whether any connection of this node subscribes to it.
//! Those are exactly the facts other nodes need, so the owner reports each change through
//! [`ClusterLink`], implemented by the bridge thread in the `gateway` crate. The calls must not block:
//! the bridge queues them and writes to Redis in batches. Without Redis (the embedded default) no link
//! is configured and nothing is reported.

use std::sync::Arc;

use bytes::Bytes;

use crate::messages::Origin;

/// Receives the owner shards' reports; implemented by the bridge.
pub trait ClusterLink: Send + Sync {
    /// `user` now has `conns` connections on this node (0: none left).
    fn presence_changed(&self, user: &Arc<str>, conns: u64);
    /// This node now has (`true`) or no longer has (`false`) a subscriber of `channel`.
    fn channel_interest(&self, channel: &Arc<str>, subscribed: bool);
    /// A direct message to `to` was delivered to `local_conns` connections of this node; the link
    /// forwards it to the other nodes holding `to` and answers `origin` with the total (or with status
    /// `unavailable` when Redis cannot be reached).
    fn forward_user(&self, to: Arc<str>, frame: Bytes, local_conns: u64, origin: Origin);
}
