//! Admission of an identified connection: when its `ready` may go out, or why it is refused.
//!
//! `ready` (or a Pusher sign-in's `signin_success`) waits for the user's owner shard, the one place
//! that counts the user's connections on this node, so that whatever reaches the owner after the
//! client read `ready` (an HTTP send handled on the owner's own shard, a message from a client told
//! out of band) finds the connection counted. On a single node with no per-user cap that is one hop
//! between shards. Besides:
//! - with `limits.max_connections_per_user`, the owner refuses a connection past the cap (error
//!   `too_many_connections`, close 1008);
//! - in cluster mode, the owner hands the connection to the bridge, which answers once the user's
//!   presence, written after this connection's `DirAdd`, is in Redis. So a message sent to the user
//!   from any node after the client read `ready` finds this node in the user's presence and is
//!   delivered live. With Redis down the bridge (or the link, failing fast) answers at once and
//!   `ready` says `"cluster":"degraded"`.
//!
//! While it waits, the connection is registered (live messages flow to it), so its live messages are
//! held in the shard's [`crate::history::resuming::Resuming`] table, as a resuming connection's are,
//! and go out right after `ready`, in order. A wait that never ends (a lost answer) is answered
//! degraded after [`crate::history::resuming::RESUME_WAIT_MS`].

pub mod decide;

use crate::ids::ConnId;

/// What the owner shard is asked to decide about a new connection (carried in `DirAdd`).
#[derive(Clone, Copy, Debug)]
pub struct Admit {
    /// The identifying connection, on the `DirAdd`'s shard.
    pub conn: ConnId,
    /// Answer with [`Verdict::Ready`] once admitted; false when a resume's replay brings `ready`
    /// instead (only a refusal is sent then).
    pub ready: bool,
}

/// Where the cluster stands for a connection's `ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// The connection's presence is in Redis.
    Confirmed,
    /// Redis could not be reached: this node serves the connection alone for now.
    Degraded,
}

impl ClusterState {
    /// The `cluster` field of `ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Confirmed => "ok",
            ClusterState::Degraded => "degraded",
        }
    }
}

/// The owner's answer about a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Past `limits.max_connections_per_user` on this node.
    TooMany,
    /// Admitted: `ready` goes out (`cluster`: `None` on a single node).
    Ready { cluster: Option<ClusterState> },
}

/// Where the bridge answers a presence confirmation: the connection and its shard.
#[derive(Clone, Copy, Debug)]
pub struct ReadyRequest {
    /// The shard holding the connection.
    pub shard: usize,
    /// The identifying connection.
    pub conn: ConnId,
}
