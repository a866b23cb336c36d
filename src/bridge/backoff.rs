//! Reconnect pacing for the bridge: capped exponential backoff with jitter, so a fleet of nodes does
//! not reconnect to a restarted Redis in lockstep.

use std::time::Duration;

use crate::cluster::now_ms;

/// Longest delay between two connection attempts.
const CAP_MS: u64 = 2_000;

/// Capped exponential backoff with jitter: 100 ms doubling to 2 s, each delay randomised to 50–100 %.
/// The cap bounds how long a node stays cut off after Redis returns (at most 2 s plus the reconnect
/// itself, so cross-node delivery is back within 5 s), while a dead Redis sees at most one connection
/// attempt per node per second.
pub(super) struct Backoff {
    next_ms: u64,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff { next_ms: 100 }
    }

    pub(super) fn reset(&mut self) {
        self.next_ms = 100;
    }

    pub(super) fn next(&mut self) -> Duration {
        let base = self.next_ms;
        self.next_ms = (self.next_ms * 2).min(CAP_MS);
        let jitter = now_ms().wrapping_mul(0x9e37_79b9_7f4a_7c15) % (base / 2 + 1);
        Duration::from_millis(base / 2 + jitter)
    }
}

/// Sleeps until `due`, or forever without one.
pub(super) async fn sleep_until_due(due: Option<std::time::Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new();
        let delays: Vec<u64> = (0..10).map(|_| b.next().as_millis() as u64).collect();
        assert!((50..=100).contains(&delays[0]), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= CAP_MS), "{delays:?}");
        assert!(delays[9] >= CAP_MS / 2, "{delays:?}");
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
