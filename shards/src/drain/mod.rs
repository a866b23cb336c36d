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

pub mod run;

use std::time::Duration;

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

    /// A drain of `plan` starting at `now`: first batch after one interval. `salt` spreads the
    /// shards' reconnect hints.
    pub fn new(plan: DrainPlan, now: u64, salt: u64) -> Drain {
        Drain {
            plan,
            next_ms: now + plan.interval.as_millis() as u64,
            deadline_ms: now + plan.window.as_millis() as u64,
            rng: Jitter::seeded(salt),
        }
    }

    /// At `now`: `None` when no batch is due; else the most connections to close in this batch
    /// (all of them at the window's end) and whether this is the last batch. Never more than one
    /// batch per interval, even after a late tick.
    pub fn due(&mut self, now: u64) -> Option<(usize, bool)> {
        if now < self.next_ms.min(self.deadline_ms) {
            return None;
        }
        let last = now >= self.deadline_ms;
        self.next_ms = now + self.plan.interval.as_millis() as u64;
        Some((if last { usize::MAX } else { self.plan.batch }, last))
    }

    /// The reconnect hint of the next connection closed, in `0..=hint_max_ms`.
    pub fn hint(&mut self) -> u64 {
        self.rng.below(self.plan.hint_max_ms + 1)
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
