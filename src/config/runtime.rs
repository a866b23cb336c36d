//! `[runtime]`: how the shards are sized, and how their rings read sockets.

use serde::{Deserialize, Serialize};

/// How the shards' rings read sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecvMode {
    /// Multishot receive into a provided buffer ring where the kernel has them (6.0+), else `poll`.
    #[default]
    Auto,
    /// Multishot receive; start-up fails on a kernel without it.
    Multishot,
    /// A multishot readiness poll per connection and a nonblocking `recv` into the shard's scratch
    /// buffer (the path for kernels before 6.0).
    Poll,
}

impl RecvMode {
    /// The data plane's form.
    pub fn to_shards(self) -> shards::uring::shard_io::RecvChoice {
        use shards::uring::shard_io::RecvChoice;
        match self {
            RecvMode::Auto => RecvChoice::Auto,
            RecvMode::Multishot => RecvChoice::Multishot,
            RecvMode::Poll => RecvChoice::Poll,
        }
    }
}

/// The best io_uring setup a shard tries; each falls back to the next when the kernel refuses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RingFlags {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (6.1+), else `coop`.
    #[default]
    Defer,
    /// `COOP_TASKRUN | TASKRUN_FLAG` (5.19+), else `none`.
    Coop,
    /// No setup flags.
    None,
}

impl RingFlags {
    /// The data plane's form.
    pub fn to_shards(self) -> shards::uring::Flavor {
        match self {
            RingFlags::Defer => shards::uring::Flavor::DeferTaskrun,
            RingFlags::Coop => shards::uring::Flavor::CoopTaskrun,
            RingFlags::None => shards::uring::Flavor::Plain,
        }
    }
}

/// Most buffers in one shard's ring (the kernel's limit).
pub const MAX_RECV_BUFFERS: u16 = 1 << 15;

/// `[runtime]`: runtime sizing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSection {
    /// glommio `io_memory` per shard, in bytes. Default 0: derived from `RLIMIT_MEMLOCK`.
    pub io_memory_bytes: usize,
    /// Cross-shard inbox slots per shard, in messages. Default 65536.
    pub inbox_capacity: usize,
    /// How the shards read sockets: `auto`, `multishot` or `poll`. Default `auto`.
    pub recv: RecvMode,
    /// The best ring setup the shards try: `defer`, `coop` or `none`. Default `defer`.
    pub ring_flags: RingFlags,
    /// Buffers in each shard's provided buffer ring, a power of two (16 B each are locked memory).
    /// Default 1024.
    pub recv_buffers: u16,
    /// Bytes per provided buffer. Default 4096.
    pub recv_buffer_bytes: usize,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        RuntimeSection {
            io_memory_bytes: 0,
            inbox_capacity: 65536,
            recv: RecvMode::Auto,
            ring_flags: RingFlags::Defer,
            recv_buffers: 1024,
            recv_buffer_bytes: 4096,
        }
    }
}

impl RuntimeSection {
    /// The buffer ring's sizes are usable: a power of two up to 32,768 buffers of 512 B to 1 MiB.
    pub fn check_buffers(&self) -> Result<(), String> {
        let n = self.recv_buffers;
        if n == 0 || !n.is_power_of_two() || n > MAX_RECV_BUFFERS {
            return Err(format!(
                "runtime.recv_buffers must be a power of two from 1 to {MAX_RECV_BUFFERS} (given {n})"
            ));
        }
        let b = self.recv_buffer_bytes;
        if !(512..=1 << 20).contains(&b) {
            return Err(format!(
                "runtime.recv_buffer_bytes must be from 512 to 1048576 (given {b})"
            ));
        }
        Ok(())
    }
}
