//! One shard: everything a core owns. The three long-lived tasks that run it are in [`run`].
//!
//! A [`Shard`] is created inside its executor and never leaves it (nothing here is `Send`). Its mutable
//! state sits in one `RefCell<ShardState>`, borrowed for the length of one poll or one batch and never
//! across an `await`, so there is no way for two tasks to see it half-updated. Tasks:
//! - the I/O driver (`crate::uring::driver`): the shard's own io_uring, which accepts on the shard's
//!   SO_REUSEPORT listener and reads and writes every connection of the shard,
//! - the inbox drain (messages from other shards and the control thread),
//! - the tick (timer-wheel visits, gauges, overflow retries, shutdown progress).
//!
//! A connection is a record in the table, not a task.

pub mod node;
pub mod run;

use std::{cell::RefCell, rc::Weak, sync::Arc, time::Instant};

use crate::{
    NodeStatus,
    config::ShardConfig,
    conn::{ratelimit::TokenBucket, table::ConnTable},
    inbox::Inbox,
    mesh::Mesh,
    metrics::ShardMetrics,
    signal::LocalSignal,
};

/// Most bytes gathered into one write.
pub const WRITE_GATHER: usize = 64 * 1024;
/// Connections past the cap that may be held at once just to be told 1013; beyond it they are dropped.
pub const MAX_REJECTING: usize = 256;

/// The mutable state of a shard, one part per concern. Each part is declared next to the code that
/// handles it; the connection table and the mesh are shared by all of them.
pub struct ShardState {
    /// Connections and their timers (the connections and I/O concern).
    pub conns: ConnTable,
    /// What the shard keeps about connections arriving and leaving, besides the table.
    pub intake: crate::conn::Intake,
    /// Sending side towards the other shards.
    pub mesh: Mesh,
    /// Users: local connections by user, and the directory of the users this shard owns.
    pub users: crate::routing::state::Users,
    /// Channels: local subscribers, the index of the channels this shard owns, Pusher members.
    pub channels: crate::routing::state::Channels,
    /// Presence queries waiting for other shards.
    pub presence: crate::routing::state::Presence,
    /// History streams this shard owns and the resumes of its connections.
    pub history: crate::history::History,
    /// Shutdown and drain progress.
    pub lifecycle: Lifecycle,
}

/// Where the shard is in its shutdown or drain.
#[derive(Default)]
pub struct Lifecycle {
    /// Set when shutdown began: when the shard must be done at the latest.
    pub shutdown_deadline_ms: Option<u64>,
    /// The paced drain, once the node started one.
    pub drain: Option<crate::drain::Drain>,
    /// `mesh.dropped` already reported to the metric.
    pub dropped_reported: u64,
}

/// A shard: one core's share of the node.
pub struct Shard {
    /// Index of this shard.
    pub id: usize,
    /// Settings, shared by every shard.
    pub config: Arc<ShardConfig>,
    /// Node-wide readiness and connection count.
    pub status: Arc<NodeStatus>,
    /// This shard's metric handles.
    pub metrics: ShardMetrics,
    /// This shard's inbox.
    pub inbox: Arc<Inbox>,
    /// Mutable state.
    pub state: RefCell<ShardState>,
    /// The shard's ring, buffers, listener and sends in flight.
    pub io: crate::uring::shard_io::ShardIo,
    /// The shard itself, for the tasks it spawns from a borrowed `&Shard`.
    pub me: Weak<Shard>,
    /// Random high bits of session ids, so they differ across restarts.
    pub session_prefix: u64,
    /// Start of the shard clock.
    pub(super) started: Instant,
    /// Fired when the listener must stop.
    pub stop_accepting: LocalSignal,
    /// Fired when a drain starts, so the tick loop steps it without waiting out a long tick.
    pub drain_started: LocalSignal,
    /// Fired when the shard is done (shutdown complete).
    pub done: LocalSignal,
}

impl Shard {
    /// Milliseconds since the shard started (the shard clock).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A new session id: random prefix, shard, counter.
    pub fn new_session(&self, st: &mut ShardState) -> u64 {
        st.intake.next_session = st.intake.next_session.wrapping_add(1);
        (self.session_prefix << 40)
            | ((self.id as u64 & 0xff) << 32)
            | st.intake.next_session as u64
    }

    /// A fresh token bucket per the configured rate.
    pub fn bucket(&self, now_ms: u64) -> TokenBucket {
        TokenBucket::new(
            self.config.rate_limit_per_sec,
            self.config.rate_limit_burst,
            now_ms,
        )
    }
}
