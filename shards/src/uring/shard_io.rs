//! What a shard's I/O owns: its ring, its provided buffers, its sends in flight, its listener.
//!
//! Kept apart from the code that drives them ([`super::driver`], [`super::accept`]) so that the shard's
//! state can hold them without depending on the I/O pass.

use std::{
    cell::{Cell, RefCell},
    io,
    os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd},
    time::Instant,
};

use io_uring::{opcode, squeue, types::Fd};

use super::{Completion, Op, RecvPath, Uring, bufring::BufRing, sends::Sends, user_data};
use crate::ids::ConnId;

/// Bytes the poll path reads at once into the shard's scratch buffer.
pub const READ_SCRATCH: usize = 64 * 1024;
/// What the shard's ring needs besides the connection table, borrowed apart from `ShardState` so a
/// received buffer can be read while the state is updated.
pub struct ShardIo {
    /// The ring. Declared first: dropped before the buffers its requests point at.
    pub uring: RefCell<Uring>,
    /// The provided buffers (multishot path).
    pub bufs: RefCell<Option<BufRing>>,
    /// How sockets are read.
    pub path: RecvPath,
    /// Sends in flight and their bytes.
    pub sends: RefCell<Sends>,
    /// The poll path's read buffer, shared by every connection one read at a time.
    pub scratch: RefCell<Box<[u8]>>,
    /// The listener and its multishot accept.
    pub acceptor: Acceptor,
    /// Completions of the current pass (kept to reuse the allocation).
    pub(super) completions: RefCell<Vec<Completion>>,
    /// Connections being settled in the current pass (kept to reuse the allocation).
    pub(super) settling: RefCell<Vec<ConnId>>,
    /// True while a pass runs (a pass is never re-entered).
    pub(super) in_pass: Cell<bool>,
    /// The buffer ring already grew in this pass.
    pub(super) grown: Cell<bool>,
}

/// How the shard's sockets are read, as configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecvChoice {
    /// Multishot receive where the kernel has it (6.0+ with buffer rings), else the poll path.
    #[default]
    Auto,
    /// Multishot receive; start-up fails when the kernel lacks it.
    Multishot,
    /// The poll path, whatever the kernel has.
    Poll,
}

impl ShardIo {
    /// The shard's ring, buffers and listener. `buffers` × `buffer_bytes` is the buffer ring.
    pub fn new(
        listener: OwnedFd,
        choice: RecvChoice,
        best: super::Flavor,
        buffers: u16,
        buffer_bytes: usize,
    ) -> io::Result<ShardIo> {
        let uring = Uring::new(best)?;
        let want_multishot = match choice {
            RecvChoice::Poll => false,
            RecvChoice::Multishot => true,
            RecvChoice::Auto => super::kernel_has_multishot_recv(),
        };
        let bufs = if want_multishot {
            match BufRing::register(uring.ring(), buffers, buffer_bytes) {
                Ok(b) => Some(b),
                Err(e) if choice == RecvChoice::Auto => {
                    tracing::warn!(error = %e, "no provided buffer ring: sockets use the poll path");
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let path = if bufs.is_some() {
            RecvPath::Multishot
        } else {
            RecvPath::Poll
        };
        Ok(ShardIo {
            uring: RefCell::new(uring),
            bufs: RefCell::new(bufs),
            path,
            sends: RefCell::new(Sends::default()),
            scratch: RefCell::new(match path {
                RecvPath::Poll => vec![0u8; READ_SCRATCH].into_boxed_slice(),
                RecvPath::Multishot => Box::new([]),
            }),
            acceptor: Acceptor::new(listener),
            completions: RefCell::new(Vec::with_capacity(256)),
            settling: RefCell::new(Vec::new()),
            in_pass: Cell::new(false),
            grown: Cell::new(false),
        })
    }

    /// Queues `sqe` on the ring.
    ///
    /// # Safety
    /// What `sqe` points at must stay valid until its completion (sends: kept in [`Sends`]).
    pub unsafe fn push(&self, sqe: &squeue::Entry) {
        // SAFETY: forwarded to the caller.
        unsafe { self.uring.borrow_mut().push(sqe) };
    }

    /// Starts reading `fd` for connection `id` (a multishot receive or a multishot poll).
    pub fn arm_recv(&self, id: ConnId, fd: RawFd) {
        let sqe = match self.path {
            RecvPath::Multishot => opcode::RecvMulti::new(Fd(fd), super::bufring::GROUP)
                .build()
                .user_data(user_data(Op::Recv, id)),
            RecvPath::Poll => opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(user_data(Op::Poll, id)),
        };
        // SAFETY: neither op points at memory of ours (the kernel picks a provided buffer).
        unsafe { self.push(&sqe) };
    }

    /// Cancels everything in flight on `fd`, then closes it, through the ring. The cancel runs
    /// first (entries of one submission run in order); their completions are ignored.
    pub fn close_fd(&self, fd: RawFd) {
        let cancel = opcode::AsyncCancel2::new(io_uring::types::CancelBuilder::fd(Fd(fd)).all())
            .build()
            .user_data(user_data(Op::Cleanup, ConnId::default()));
        let close = opcode::Close::new(Fd(fd))
            .build()
            .user_data(user_data(Op::Cleanup, ConnId::default()));
        // SAFETY: neither op points at memory of ours.
        unsafe {
            self.push(&cancel);
            self.push(&close);
        }
    }
}

/// The shard's listener and the state of its multishot accept.
pub struct Acceptor {
    /// The listening socket (-1 once closed).
    pub(super) fd: Cell<RawFd>,
    /// A multishot accept is armed.
    pub(super) armed: Cell<bool>,
    /// The listener is closed: nothing is accepted or re-armed any more.
    pub(super) stopped: Cell<bool>,
    /// When the last accept error was logged (one warning a second at most).
    pub(super) last_warning: Cell<Option<Instant>>,
}

impl Acceptor {
    /// An acceptor for `listener` (not armed yet).
    pub fn new(listener: OwnedFd) -> Acceptor {
        Acceptor {
            fd: Cell::new(listener.into_raw_fd()),
            armed: Cell::new(false),
            stopped: Cell::new(false),
            last_warning: Cell::new(None),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        let fd = self.fd.replace(-1);
        if fd >= 0 {
            // SAFETY: the listener is ours and still open.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}
