//! The cluster layer: what several gateway nodes sharing one Redis need to know about each other.
//!
//! Why it exists: with one node, every user and channel is local and the shards route among themselves.
//! With several nodes behind one load balancer, any node may hold any user, and a node may die while its
//! users reconnect elsewhere. Each node then needs answers that only a shared store can give: which nodes
//! hold a user (to send to it), which nodes exist and live (for operators and for routing), and a way to
//! hand a message to another node. Redis gives all three with atomic scripts, key expiry (a crashed node's
//! state disappears without anyone cleaning up after it) and pub/sub.
//!
//! What lives in Redis, and only that (names in [`keys`]):
//!
//! - **presence** ([`presence`]): per user, the holding nodes with connection counts and the time of
//!   each node's last write, fenced against late writes and expiring with a TTL;
//! - **the node registry** ([`registry`]): per node, a description and an alive key with a short TTL;
//! - **history** ([`history`]): per user, the kept messages (a stream bounded by count and age) with
//!   the stream's epoch and last seq, for resume;
//! - **pub/sub channels** per node and per gateway channel (used by the bridge).
//!
//! Connections, subscriptions, sessions and messages stay in the shards: Redis holds what another node
//! must read, never what only the holding node needs, so losing Redis costs cross-node features, not
//! local service.
//!
//! Everything here is async on a [`conn::Conn`] (tokio: one Redis, or a Redis Cluster) and knows nothing of the
//! shards: it runs on the bridge thread's runtime, and the shards reach it only through that thread's
//! inboxes. Errors are the `redis` crate's; the caller decides whether to retry, report or degrade.

pub mod conn;
pub mod history;
pub mod keys;
pub mod members;
pub mod occupancy;
pub mod presence;
pub mod pusher_members;
pub mod registry;
pub mod slots;

use std::time::{SystemTime, UNIX_EPOCH};

pub use members::ChannelMembers;
pub use presence::{Fence, PresenceStore};
pub use pusher_members::PusherMembers;
pub use registry::{Liveness, NodeInfo, NodeState, NodeStats, NodeView, Registry};

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it): the timestamps stored in
/// presence values and node descriptions.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
