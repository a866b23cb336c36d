//! The shard's own io_uring: every accept, receive, send and close of its sockets.
//!
//! glommio 0.9 reads a socket with a one-shot `POLL_ADD` plus a `recv` syscall per read, and holds a
//! `TcpStream`, a task and a 512-byte `Source` per connection (`shared/IO_NOTES.md`). This ring is
//! created on the shard's thread and entered by it alone (`SINGLE_ISSUER | DEFER_TASKRUN` where the
//! kernel has them): a multishot accept on the shard's listener, a multishot receive per connection
//! into the shard's provided buffer ring ([`bufring`]), sends gathered per connection and submitted in
//! one batch per pass, cancel and close through the ring. A connection is then only its record in the
//! shard's table: no task, no future, no waker, no socket object.
//!
//! glommio stays the shard's executor (tasks, timers, inboxes, pinning): the ring signals an eventfd,
//! and a shard task waits for it with an 8-byte read through glommio's public file API
//! ([`driver::run`]). A kernel without multishot receive or buffer rings gets the poll path: a
//! multishot `POLL_ADD` per connection and a nonblocking `recv` into the shard's scratch buffer.

pub mod accept;
pub mod bufring;
pub mod driver;
pub mod sends;
pub mod shard_io;

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use io_uring::{IoUring, squeue};

use crate::ids::ConnId;

/// What a completion is for (the top byte of its user data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// The listener's multishot accept.
    Accept = 1,
    /// A connection's multishot receive.
    Recv = 2,
    /// A connection's send.
    Send = 3,
    /// A connection's multishot readiness poll (the poll path).
    Poll = 4,
    /// A cancel or a close: nothing to do when it completes.
    Cleanup = 5,
}

/// Connection slots a shard can address in user data (24 bits: 16.7 M per shard).
pub const MAX_SLOTS: u32 = 1 << 24;

/// The user data of `op` on connection `id`: op (8 bits), slot (24 bits), generation (32 bits).
pub fn user_data(op: Op, id: ConnId) -> u64 {
    ((op as u64) << 56) | (((id.index & (MAX_SLOTS - 1)) as u64) << 32) | id.generation as u64
}

/// The op and connection a completion's user data names.
pub fn decode(user_data: u64) -> (Option<Op>, ConnId) {
    let op = match (user_data >> 56) as u8 {
        1 => Some(Op::Accept),
        2 => Some(Op::Recv),
        3 => Some(Op::Send),
        4 => Some(Op::Poll),
        5 => Some(Op::Cleanup),
        _ => None,
    };
    let id = ConnId {
        index: ((user_data >> 32) as u32) & (MAX_SLOTS - 1),
        generation: user_data as u32,
    };
    (op, id)
}

/// How the ring was set up, best first; logged at start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavor {
    /// `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG`: completions are posted only when the shard
    /// enters the ring.
    #[default]
    DeferTaskrun,
    /// `COOP_TASKRUN | TASKRUN_FLAG`: no inter-processor interrupt to post a completion.
    CoopTaskrun,
    /// No setup flags (kernels before 5.19).
    Plain,
}

/// How the shard reads its sockets; chosen at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvPath {
    /// Multishot receive into the provided buffer ring (6.0+).
    Multishot,
    /// Multishot poll plus a nonblocking `recv` into the shard's scratch buffer.
    Poll,
}

/// A completion, copied out of the completion queue.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    /// What it is for.
    pub user_data: u64,
    /// The result (bytes, a descriptor, or a negated errno).
    pub result: i32,
    /// `IORING_CQE_F_*`.
    pub flags: u32,
}

/// `IORING_ENTER_GETEVENTS` (not re-exported by the io-uring crate).
const ENTER_GETEVENTS: u32 = 1;

/// Submission queue entries of a shard's ring.
pub const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries (four per submission entry: multishot ops post many).
pub const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;

/// The shard's ring and the eventfd it signals.
pub struct Uring {
    /// The ring. Declared first: dropped before anything its requests point at.
    ring: IoUring,
    /// How it was set up.
    pub flavor: Flavor,
    /// Signalled by the kernel when completions (or deferred work) arrive.
    eventfd: OwnedFd,
}

impl Uring {
    /// A ring with the best setup flags this kernel accepts, starting from `best` (a lower flavour
    /// is only ever chosen to run the fallbacks on a kernel that has better), and a registered eventfd.
    pub fn new(best: Flavor) -> io::Result<Uring> {
        let mut last = None;
        let flavors = [Flavor::DeferTaskrun, Flavor::CoopTaskrun, Flavor::Plain];
        let from = flavors.iter().position(|&f| f == best).unwrap_or(0);
        for flavor in flavors.into_iter().skip(from) {
            let mut b = IoUring::builder();
            b.setup_cqsize(CQ_ENTRIES);
            match flavor {
                Flavor::DeferTaskrun => {
                    b.setup_single_issuer()
                        .setup_defer_taskrun()
                        .setup_taskrun_flag();
                }
                Flavor::CoopTaskrun => {
                    b.setup_coop_taskrun().setup_taskrun_flag();
                }
                Flavor::Plain => {}
            }
            match b.build(SQ_ENTRIES) {
                Ok(ring) => {
                    // SAFETY: plain syscall; the descriptor is checked below and owned from then on.
                    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
                    if raw < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // SAFETY: `raw` is a fresh descriptor nothing else owns.
                    let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
                    ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
                    return Ok(Uring {
                        ring,
                        flavor,
                        eventfd,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("io_uring setup failed")))
    }

    /// The ring, to register buffers with it.
    pub fn ring(&self) -> &IoUring {
        &self.ring
    }

    /// A descriptor of the eventfd (a duplicate, for the task that waits on it).
    pub fn eventfd_dup(&self) -> io::Result<RawFd> {
        // SAFETY: plain syscall on a descriptor we own.
        let fd = unsafe { libc::fcntl(self.eventfd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(fd)
        }
    }

    /// Wakes the task waiting on the eventfd (from the shard's own thread: a timer re-arming accept).
    pub fn poke(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one` to our eventfd.
        let _ = unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Queues `sqe`, submitting what is queued first when the submission queue is full.
    ///
    /// # Safety
    /// Whatever `sqe` points at (a send's bytes) must stay valid until its completion is reaped.
    pub unsafe fn push(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: the caller keeps what `sqe` points at alive until its completion.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::warn!(error = %e, "io_uring submit failed");
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    return;
                }
            }
        }
    }

    /// True when no submission waits.
    pub fn nothing_queued(&mut self) -> bool {
        self.ring.submission().is_empty()
    }

    /// Submits what is queued (nothing to do when the queue is empty).
    pub fn submit(&mut self) {
        if self.ring.submission().is_empty() {
            return;
        }
        if let Err(e) = self.ring.submit() {
            tracing::debug!(error = %e, "io_uring submit");
        }
    }

    /// Submits what is queued and copies every completion available into `out`. With `DEFER_TASKRUN`
    /// this enters the ring (once) to run the deferred work that posts them.
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        if self.flavor == Flavor::DeferTaskrun {
            let to_submit = self.ring.submission().len() as u32;
            // SAFETY: no argument is passed; GETEVENTS with min_complete 0 never blocks.
            let r = unsafe {
                self.ring
                    .submitter()
                    .enter::<libc::sigset_t>(to_submit, 0, ENTER_GETEVENTS, None)
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "io_uring enter");
            }
        } else if !self.ring.submission().is_empty() || self.ring.submission().taskrun() {
            // Submits, and runs the completions' task work when the kernel flagged some (COOP_TASKRUN
            // posts them only when this thread enters the kernel).
            if let Err(e) = self.ring.submit() {
                tracing::debug!(error = %e, "io_uring submit");
            }
        }
        out.extend(self.ring.completion().map(|c| Completion {
            user_data: c.user_data(),
            result: c.result(),
            flags: c.flags(),
        }));
    }

    /// Stops (`true`) or restarts the eventfd's signals. A pass runs quiet: it reaps what its own
    /// enters post, and a signal for each would only wake the driver for nothing.
    pub fn quiet(&mut self, on: bool) {
        if on {
            self.ring.completion().disable_eventfd();
        } else {
            self.ring.completion().enable_eventfd();
        }
    }

    /// True when completions wait, or deferred work that will post some (`IORING_SQ_TASKRUN`). Called
    /// after the signals are restarted: work that came while they were off is seen here, work that
    /// comes after signals the eventfd. The kernel sets the flag with a locked (fully ordered) atomic
    /// on x86-64 and then reads the signal switch; the fence orders our side. Elsewhere an extra enter
    /// makes sure.
    pub fn work_pending(&mut self) -> bool {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if cfg!(not(target_arch = "x86_64")) && self.flavor == Flavor::DeferTaskrun {
            // SAFETY: no argument; GETEVENTS with min_complete 0 never blocks.
            let _ = unsafe {
                self.ring
                    .submitter()
                    .enter::<libc::sigset_t>(0, 0, ENTER_GETEVENTS, None)
            };
        }
        self.ring.submission().taskrun() || !self.ring.completion().is_empty()
    }

    /// Memory this ring charges to RLIMIT_MEMLOCK (submission entries, completion entries and the
    /// rings' headers, in whole pages), as the kernel accounts it.
    pub fn memlock_bytes() -> usize {
        let sqes = SQ_ENTRIES as usize * 64;
        let cqes = CQ_ENTRIES as usize * 16 + 64 + SQ_ENTRIES as usize * 4;
        sqes.div_ceil(4096) * 4096 + cqes.div_ceil(4096) * 4096
    }
}

/// True when this kernel has multishot receive (6.0): the release is read from `uname`.
pub fn kernel_has_multishot_recv() -> bool {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    let release: String = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    major >= 6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        for (op, index, generation) in [
            (Op::Recv, 0, 1),
            (Op::Send, MAX_SLOTS - 1, u32::MAX),
            (Op::Accept, 0, 0),
            (Op::Cleanup, 12345, 777),
        ] {
            let id = ConnId { index, generation };
            assert_eq!(decode(user_data(op, id)), (Some(op), id));
        }
        assert_eq!(decode(0).0, None);
    }
}
