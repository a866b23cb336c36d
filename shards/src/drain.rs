//! The paced drain of a shard: its open connections closed in batches over a window, each with 1012 and
//! a jittered reconnect hint, so that clients leave a draining node gradually and do not all land on the
//! remaining nodes (and their load balancer) at the same instant.
//!
//! The node decides the plan (when to stop accepting, the batch per interval, the window) and sends it
//! to every shard ([`crate::messages::NodeMsg::Drain`]); each shard steps it from its tick. A batch is
//! the next connections that are not already closing ([`crate::conn::table::ConnTable::open_ids`]), so
//! an interval costs the batch, not the table. At the window's end whatever is still open is closed at
//! once. The shard then finishes like a shutdown: done when every connection has gone or after the close
//! grace.

use std::time::Duration;

use tracing::info;

use crate::{
    shard::{Shard, ShardState},
    ws::{CloseReason, close::restart_reason, encode::close_frame_with},
};

/// One shard's share of a drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainPlan {
    /// Connections this shard closes per interval at most.
    pub batch: usize,
    /// Time between two batches.
    pub interval: Duration,
    /// Time from the drain's start until everything left is closed at once.
    pub window: Duration,
    /// Upper bound of the reconnect hint; each connection gets a uniform value in `0..=hint_max_ms`.
    pub hint_max_ms: u64,
}

/// A shard's drain in progress, stepped by the shard's tick.
pub struct Drain {
    plan: DrainPlan,
    /// When the next batch is due.
    next_ms: u64,
    /// When everything left is closed.
    deadline_ms: u64,
    rng: Jitter,
}

impl Drain {
    /// How long the tick may sleep while draining.
    pub fn interval(&self) -> Duration {
        self.plan.interval
    }
}

/// Starts this shard's drain (once; a second plan, or one after a shutdown began, is ignored): stops
/// accepting at once, first batch after one interval.
pub fn start(shard: &Shard, st: &mut ShardState, plan: DrainPlan, now: u64) {
    if st.lifecycle.drain.is_some() || st.lifecycle.shutdown_deadline_ms.is_some() {
        return;
    }
    shard.stop_accepting.fire();
    info!(
        shard = shard.id,
        connections = st.conns.len(),
        batch = plan.batch,
        interval_ms = plan.interval.as_millis() as u64,
        window_ms = plan.window.as_millis() as u64,
        "draining"
    );
    st.lifecycle.drain = Some(Drain {
        plan,
        next_ms: now + plan.interval.as_millis() as u64,
        deadline_ms: now + plan.window.as_millis() as u64,
        rng: Jitter::seeded(shard.id as u64),
    });
    shard.drain_started.fire();
}

/// One tick of the drain: a batch when one is due (never more than one per interval, even after a
/// late tick), everything at the window's end; then the shard finishes like a shutdown.
pub fn step(shard: &Shard, st: &mut ShardState, now: u64) {
    let Some(drain) = st.lifecycle.drain.as_mut() else {
        return;
    };
    if st.lifecycle.shutdown_deadline_ms.is_some() || now < drain.next_ms.min(drain.deadline_ms) {
        return;
    }
    let last = now >= drain.deadline_ms;
    drain.next_ms = now + drain.plan.interval.as_millis() as u64;
    let max = if last { usize::MAX } else { drain.plan.batch };
    let ids = st.conns.open_ids(max);
    let hint_max = drain.plan.hint_max_ms;
    for &id in &ids {
        let hint = drain.rng.below(hint_max + 1);
        let frame = close_frame_with(CloseReason::Restart, &restart_reason(hint));
        st.conns
            .close_with(id, CloseReason::Restart, Some(frame), now);
    }
    info!(shard = shard.id, closed = ids.len(), "drain batch");
    if last || st.conns.open_ids(1).is_empty() {
        // Everything is closing: finish like a shutdown once the close handshakes are done.
        st.lifecycle.shutdown_deadline_ms =
            Some(now + shard.config.close_grace.as_millis() as u64 + 1000);
        info!(shard = shard.id, deadline_reached = last, "drain done");
    }
}

/// A small xorshift generator for the reconnect hints (no need for cryptographic quality, only spread).
struct Jitter(u64);

impl Jitter {
    fn seeded(salt: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter((nanos ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    /// Uniform enough in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_stay_in_range_and_spread() {
        let mut j = Jitter::seeded(3);
        let hints: Vec<u64> = (0..1000).map(|_| j.below(5001)).collect();
        assert!(hints.iter().all(|h| *h <= 5000));
        assert!(hints.iter().any(|h| *h < 1000) && hints.iter().any(|h| *h > 4000));
    }
}
