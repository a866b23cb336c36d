//! Node-wide status shared between the data plane and the control thread.
//!
//! The shards write it (one `accepting` flag each, a node-wide connection count); the admin server reads
//! it to answer `/readyz`. Every field is an atomic touched on state changes only (start, stop, accept,
//! close), never per message, so sharing it across cores costs nothing on the hot path.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::iplimit::PerIpCounts;

/// Readiness and capacity of one node.
#[derive(Debug)]
pub struct NodeStatus {
    /// Number of shards the node runs; fixed at start-up.
    shards: usize,
    /// Shards whose accept loop is running. Each shard increments it once its listener is live and
    /// decrements it when it stops accepting (shutdown).
    accepting: AtomicUsize,
    /// Set once by the signal handler (or an admin call); never cleared.
    shutting_down: AtomicBool,
    /// Open client connections over all shards (including ones still in the handshake).
    /// Incremented on accept, decremented on close; the capacity check reads it.
    connections: AtomicUsize,
    /// Connection cap for the whole node (from config or derived from the open-file limit).
    max_connections: usize,
    /// Open connections by client address, for `limits.max_connections_per_ip` (empty while it is 0).
    per_ip: PerIpCounts,
}

impl NodeStatus {
    /// A status for `shards` shards that admits at most `max_connections` connections.
    pub fn new(shards: usize, max_connections: usize) -> Self {
        NodeStatus {
            shards,
            accepting: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            max_connections,
            per_ip: PerIpCounts::default(),
        }
    }

    /// Number of shards in the node.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Called by a shard once its accept loop runs.
    pub fn shard_accepting(&self) {
        self.accepting.fetch_add(1, Ordering::AcqRel);
    }

    /// Called by a shard when it stops accepting.
    pub fn shard_stopped(&self) {
        self.accepting.fetch_sub(1, Ordering::AcqRel);
    }

    /// Flags the node as shutting down: readiness fails from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// `Ok` when every shard accepts and the node is not shutting down; otherwise why not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.is_shutting_down() {
            return Err("shutting down".into());
        }
        let accepting = self.accepting.load(Ordering::Acquire);
        if accepting < self.shards {
            return Err(format!("{accepting}/{} shards accepting", self.shards));
        }
        Ok(())
    }

    /// Open connections on the node.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Connection cap of the node.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Counts a new connection; returns false (and counts nothing) when the node is full.
    pub fn try_admit(&self) -> bool {
        let mut cur = self.connections.load(Ordering::Relaxed);
        loop {
            if cur >= self.max_connections {
                return false;
            }
            match self.connections.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Open connections by client address, shared by every shard.
    pub fn per_ip(&self) -> &PerIpCounts {
        &self.per_ip
    }

    /// Counts a connection that was admitted and is now gone.
    pub fn release(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_shard_accepts() {
        let s = NodeStatus::new(2, 10);
        assert!(s.readiness().is_err());
        s.shard_accepting();
        assert!(s.readiness().is_err());
        s.shard_accepting();
        assert!(s.readiness().is_ok());
        s.begin_shutdown();
        assert_eq!(s.readiness().unwrap_err(), "shutting down");
    }

    #[test]
    fn admission_stops_at_the_cap() {
        let s = NodeStatus::new(1, 2);
        assert!(s.try_admit());
        assert!(s.try_admit());
        assert!(!s.try_admit());
        s.release();
        assert!(s.try_admit());
        assert_eq!(s.connections(), 2);
    }
}
