//! The node's paced drain: the timeline that SIGTERM (or `POST /v1/drain`) starts.
//!
//! 1. At once: `/readyz` turns 503 and the registry shows `draining`; liveness stays 200 and every
//!    connection keeps working.
//! 2. After `drain_delay_ms` (load balancers have seen the 503 and stopped sending new clients): the
//!    listeners close and every shard closes its open connections in batches, `drain_batch` per
//!    `drain_interval_ms` for the node (split over the shards), each with 1012 and a jittered
//!    `{"reconnect_after_ms":N}` reason; users' presence leaves Redis as their connections close.
//! 3. When no connection is left, or at the end of `drain_window_ms` (the rest is closed at once), the
//!    shards finish after the close grace and the process exits 0.
//!
//! A second SIGTERM or SIGINT at any point ends the drain at once: everything left is closed (1001)
//! and the node exits once the close grace has run, cleaning up Redis as usual; a third exits at once.

use std::{
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use shards::{drain::DrainPlan, inbox::Inbox, messages::NodeMsg, runtime::broadcast};
use tracing::{info, warn};

use crate::config::ShutdownSection;

/// What starts (or cuts short) a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGTERM or SIGINT (its number).
    Signal(i32),
    /// `POST /v1/drain`.
    Api,
}

/// The admin API's handle on the drain.
pub struct DrainSwitch {
    tx: Mutex<mpsc::Sender<Trigger>>,
    /// Readiness, turned off before the request returns (so `/readyz` is 503 once the API answered).
    status: std::sync::OnceLock<Arc<shards::status::NodeStatus>>,
}

impl DrainSwitch {
    /// A switch feeding `tx`.
    pub fn new(tx: mpsc::Sender<Trigger>) -> Self {
        DrainSwitch {
            tx: Mutex::new(tx),
            status: std::sync::OnceLock::new(),
        }
    }

    /// The readiness this switch turns off at once.
    pub fn set_status(&self, status: Arc<shards::status::NodeStatus>) {
        let _ = self.status.set(status);
    }

    /// Asks for a drain (idempotent: a drain already running goes on unchanged).
    pub fn request(&self) {
        if let Some(status) = self.status.get() {
            status.begin_shutdown();
        }
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(Trigger::Api);
        }
    }
}

/// Splits the node's batch over `shards` (earlier shards take the remainder), at least 1 each.
pub fn split_batch(batch: usize, shards: usize) -> Vec<usize> {
    let shards = shards.max(1);
    (0..shards)
        .map(|i| (batch / shards + usize::from(i < batch % shards)).max(1))
        .collect()
}

/// Runs steps 2 and 3 of the timeline after a first trigger started it; returns when the shards were
/// told to drain (or to stop at once), and the caller joins them. `open` reads the node's open
/// connections. Later triggers are watched on a thread of their own from then on.
pub fn run(
    cfg: &ShutdownSection,
    triggers: mpsc::Receiver<Trigger>,
    inboxes: &Arc<[Arc<Inbox>]>,
    open: impl Fn() -> usize,
) {
    let delay = Duration::from_millis(cfg.drain_delay_ms);
    let deadline = Instant::now() + delay;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match triggers.recv_timeout(left) {
            Ok(Trigger::Signal(_)) => {
                warn!("second signal: ending the drain now");
                broadcast(inboxes, |_| NodeMsg::Shutdown);
                return watch(triggers, inboxes.clone(), true);
            }
            Ok(Trigger::Api) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(left);
                break;
            }
        }
    }
    let connections = open();
    let batch = cfg.drain_batch_for(connections);
    let shares = split_batch(batch, inboxes.len());
    info!(
        connections,
        batch,
        interval_ms = cfg.drain_interval_ms,
        window_ms = cfg.drain_window_ms,
        "listeners closed; closing connections in batches with 1012"
    );
    broadcast(inboxes, |i| {
        NodeMsg::Drain(DrainPlan {
            batch: shares[i],
            interval: Duration::from_millis(cfg.drain_interval_ms),
            window: Duration::from_millis(cfg.drain_window_ms),
            hint_max_ms: cfg.reconnect_hint_max_ms,
        })
    });
    watch(triggers, inboxes.clone(), false);
}

/// Watches later signals on a thread: the first (unless `cut` already) ends the drain at once, the
/// next exits the process. `POST /v1/drain` during a drain changes nothing.
fn watch(triggers: mpsc::Receiver<Trigger>, inboxes: Arc<[Arc<Inbox>]>, mut cut: bool) {
    let spawned = std::thread::Builder::new()
        .name("drain-signals".into())
        .spawn(move || {
            while let Ok(trigger) = triggers.recv() {
                if trigger == Trigger::Api {
                    continue;
                }
                if cut {
                    warn!("another signal: exiting now");
                    std::process::exit(0);
                }
                warn!("second signal: ending the drain now");
                broadcast(&inboxes, |_| NodeMsg::Shutdown);
                cut = true;
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot watch for a second signal; the drain runs to its end");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_is_split_over_shards_without_exceeding_it() {
        assert_eq!(split_batch(10, 3), vec![4, 3, 3]);
        assert_eq!(split_batch(2, 2), vec![1, 1]);
        assert_eq!(split_batch(100, 1), vec![100]);
        // Each shard closes at least one per interval.
        assert_eq!(split_batch(1, 2), vec![1, 1]);
    }

    #[test]
    fn an_even_spread_covers_the_window() {
        let cfg = ShutdownSection::default();
        // 30 s window, 100 ms interval: 300 batches.
        assert_eq!(cfg.drain_batch_for(3000), 10);
        assert_eq!(cfg.drain_batch_for(3001), 11);
        assert_eq!(cfg.drain_batch_for(0), 1);
        let fixed = ShutdownSection {
            drain_batch: 50,
            ..ShutdownSection::default()
        };
        assert_eq!(fixed.drain_batch_for(1_000_000), 50);
    }
}
