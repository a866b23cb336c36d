//! Starting and stopping the shards: one glommio executor per core, pinned, each given its listener.
//!
//! glommio registers `io_memory` per executor with io_uring, which counts against RLIMIT_MEMLOCK; the
//! caller sizes it (see [`io_memory_for`]) so that every executor starts under the limit.

use std::{
    io,
    os::fd::{IntoRawFd, OwnedFd},
    sync::Arc,
    time::Duration,
};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use std::os::fd::FromRawFd;
use tracing::warn;

use crate::{
    NodeStatus,
    config::ShardConfig,
    inbox::Inbox,
    messages::{NodeMsg, ShardMsg},
    shard,
};

/// The running data plane: the shard executors and a handle to each inbox.
pub struct DataPlane {
    /// Join handles, by shard.
    handles: Vec<ExecutorJoinHandle<()>>,
    /// Every shard's inbox.
    inboxes: Arc<[Arc<Inbox>]>,
}

/// Cores this process may run on (its CPU affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set, and sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    // SAFETY: `set` was filled by sched_getaffinity; CPU_ISSET reads within it for i < CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// io_memory per shard that keeps `shards` executors under a locked-memory limit of `memlock` bytes
/// (`None`: unlimited). glommio registers io_memory with each of an executor's three rings and the
/// kernel charges every registration to RLIMIT_MEMLOCK, so one shard locks 3 × io_memory. Half the
/// limit is shared out that way, at most 1 MiB per shard, at least 64 KiB; the other half is headroom
/// for anything else the process locks. The gateway does no file I/O through these buffers, so a small
/// io_memory costs nothing on the network path.
pub fn io_memory_for(memlock: Option<u64>, shards: usize) -> usize {
    const MAX: u64 = 1 << 20;
    const MIN: u64 = 64 << 10;
    const RINGS: u64 = 3;
    match memlock {
        None => MAX as usize,
        Some(limit) => (limit / 2 / (RINGS * shards.max(1) as u64)).clamp(MIN, MAX) as usize,
    }
}

impl DataPlane {
    /// Starts `config.shards` executors, shard `i` serving `listeners[i]`.
    pub fn start(
        config: ShardConfig,
        listeners: Vec<OwnedFd>,
        status: Arc<NodeStatus>,
    ) -> io::Result<DataPlane> {
        let n = config.shards;
        assert_eq!(listeners.len(), n, "one listener per shard");
        let inboxes: Arc<[Arc<Inbox>]> = (0..n)
            .map(|_| Arc::new(Inbox::new(config.inbox_capacity)))
            .collect();
        let config = Arc::new(config);
        let mut handles = Vec::with_capacity(n);
        for (i, fd) in listeners.into_iter().enumerate() {
            let placement = match config.cpus.get(i) {
                Some(&cpu) => Placement::Fixed(cpu),
                None => Placement::Unbound,
            };
            let (config, status, inboxes) = (config.clone(), status.clone(), inboxes.clone());
            let raw = fd.into_raw_fd();
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{i}"))
                .io_memory(config.io_memory_bytes)
                .preempt_timer(Duration::from_millis(50))
                .spawn(move || async move {
                    // SAFETY: `raw` is a listening TCP socket whose ownership was moved here from an
                    // OwnedFd; nothing else holds or closes it.
                    let listener = unsafe { OwnedFd::from_raw_fd(raw) };
                    shard::run::run(i, config, listener, status, inboxes).await;
                })
                .map_err(io::Error::from)?;
            handles.push(handle);
        }
        Ok(DataPlane { handles, inboxes })
    }

    /// Every shard's inbox (for the control thread).
    pub fn inboxes(&self) -> &Arc<[Arc<Inbox>]> {
        &self.inboxes
    }

    /// Tells every shard to stop accepting and close its connections with 1001.
    pub fn shutdown(&self) {
        broadcast(&self.inboxes, |_| NodeMsg::Shutdown);
    }
}

/// Sends `msg(shard)` to every shard; an inbox is full only under extreme load, so a full one is retried
/// until the shard makes room (this is for control messages that must arrive: stop, drain, shutdown).
pub fn broadcast<M: Into<ShardMsg>>(inboxes: &[Arc<Inbox>], msg: impl Fn(usize) -> M) {
    for (i, inbox) in inboxes.iter().enumerate() {
        let mut m = msg(i).into();
        while let Err(back) = inbox.send(m) {
            m = back;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl DataPlane {
    /// Waits for every shard to finish.
    pub fn join(self) {
        for (i, h) in self.handles.into_iter().enumerate() {
            if let Err(e) = h.join() {
                warn!(shard = i, error = %e, "shard ended with an error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_memory_fits_the_memlock_limit() {
        // 8 MiB limit, 2 shards: 4 MiB shared by 6 registrations.
        assert_eq!(io_memory_for(Some(8 << 20), 2), (4 << 20) / 6);
        // 8 MiB, 16 shards: 48 registrations share 4 MiB.
        assert_eq!(io_memory_for(Some(8 << 20), 16), (4 << 20) / 48);
        // 1 MiB, 16 shards: the floor.
        assert_eq!(io_memory_for(Some(1 << 20), 16), 64 << 10);
        assert_eq!(io_memory_for(Some(64 << 20), 2), 1 << 20);
        assert_eq!(io_memory_for(Some(64 << 10), 4), 64 << 10);
        assert_eq!(io_memory_for(None, 4), 1 << 20);
        assert!(!allowed_cpus().is_empty());
    }
}
