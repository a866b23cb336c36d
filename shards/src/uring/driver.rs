//! The shard's I/O pass: completions go straight into the connection table, queued output goes out
//! as one batch of sends.
//!
//! A pass (1) settles every connection listed dirty (frames queued, a close begun, an abort): it
//! prepares one send per connection with output and none in flight, or ends the connection; (2) enters
//! the ring once, which submits those sends and posts what completed; (3) dispatches each completion
//! to its connection: bytes read go to [`crate::conn::input`], a send's completion advances the
//! queue, an EOF or error ends the connection. It repeats while completions come, then returns.
//!
//! The driver task ([`run`]) runs passes and sleeps on the ring's eventfd between them, through an
//! 8-byte read on glommio's own ring: glommio stays the executor, and no fork of it is needed. The
//! inbox and tick tasks end their batches with a pass of their own (without waiting), so frames they
//! queue go out at once. No wake-up is lost: the driver sleeps only after a pass found nothing, and
//! anything posted after that pass's enter signals the eventfd, so the read returns at once.

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd, RawFd},
    rc::Rc,
};

use glommio::io::BufferedFile;
use io_uring::{cqueue, opcode, types::Fd};

use super::{Completion, Op, decode, user_data};
use crate::{
    conn::{
        Phase, input,
        lifecycle::{abort_reason, finish},
        outq::Prepared,
    },
    ids::ConnId,
    shard::{Shard, ShardState, WRITE_GATHER},
    ws::CloseReason,
};

/// Enters of the ring in one round of a pass (each takes what completed and submits what the
/// previous one queued).
const ROUNDS: usize = 4;
/// Rounds in one pass before the rest is left to the driver.
const PASSES: usize = 4;

/// Runs the shard's I/O until the shard's executor ends.
pub async fn run(shard: Rc<Shard>) {
    let efd = match shard.io.uring.borrow().eventfd_dup() {
        // SAFETY: `fd` is a fresh duplicate that the file owns and closes from here on.
        Ok(fd) => unsafe { BufferedFile::from_raw_fd(fd) },
        Err(e) => {
            tracing::error!(shard = shard.id, error = %e, "cannot wait on the ring's eventfd");
            return;
        }
    };
    super::accept::start(&shard);
    loop {
        let busy = {
            let mut st = shard.state.borrow_mut();
            pass(&shard, &mut st)
        };
        if busy {
            glommio::yield_if_needed().await;
        }
        // Sleep until the kernel (or a pass that left work for later) signals the eventfd.
        if let Err(e) = efd.read_at(0, 8).await {
            tracing::error!(shard = shard.id, error = %e, "eventfd read failed");
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// One I/O pass (see the module docs), run by the driver and at the end of every inbox batch and tick.
/// It runs with the eventfd's signals off and ends only when no work waits (checked after they are
/// back on); after `PASSES` rounds of work it leaves the rest to the driver (and signals it).
/// Returns true when completions were handled.
pub fn pass(shard: &Shard, st: &mut ShardState) -> bool {
    if shard.io.in_pass.replace(true) {
        return false;
    }
    shard.io.grown.set(false);
    let mut completions = shard.io.completions.take();
    let mut busy = false;
    let mut done = false;
    for _ in 0..PASSES {
        shard.io.uring.borrow_mut().quiet(true);
        busy |= rounds(shard, st, &mut completions);
        let mut uring = shard.io.uring.borrow_mut();
        uring.quiet(false);
        if !uring.work_pending() {
            done = true;
            break;
        }
    }
    if !done {
        shard.io.uring.borrow().poke();
    }
    st.mesh.flush();
    completions.clear();
    shard.io.completions.replace(completions);
    shard.io.in_pass.set(false);
    busy
}

/// Enters the ring (submitting what is queued and taking what completed) and dispatches the
/// completions, again while that queued more work; the last round's submissions are entered too.
fn rounds(shard: &Shard, st: &mut ShardState, completions: &mut Vec<Completion>) -> bool {
    let mut busy = false;
    for round in 0..ROUNDS {
        settle_dirty(shard, st);
        if round > 0 && shard.io.uring.borrow_mut().nothing_queued() {
            break;
        }
        completions.clear();
        shard.io.uring.borrow_mut().reap(completions);
        if completions.is_empty() {
            break;
        }
        busy = true;
        for c in completions.iter() {
            complete(shard, st, *c);
        }
    }
    settle_dirty(shard, st);
    shard.io.uring.borrow_mut().submit();
    busy
}

/// Dispatches one completion.
fn complete(shard: &Shard, st: &mut ShardState, c: Completion) {
    let (op, id) = decode(c.user_data);
    match op {
        Some(Op::Recv) => on_recv(shard, st, id, c),
        Some(Op::Poll) => on_poll(shard, st, id, c),
        Some(Op::Send) => on_send(shard, st, id, c),
        Some(Op::Accept) => super::accept::on_accept(shard, st, c),
        Some(Op::Cleanup) | None => {}
    }
}

/// A multishot receive posted: bytes in a provided buffer, EOF, or its end.
fn on_recv(shard: &Shard, st: &mut ShardState, id: ConnId, c: Completion) {
    let more = cqueue::more(c.flags);
    if c.result > 0 {
        let Some(bid) = cqueue::buffer_select(c.flags) else {
            return eof(shard, st, id);
        };
        let mut bufs = shard.io.bufs.borrow_mut();
        let Some(ring) = bufs.as_mut() else { return };
        if reading(st, id) {
            let data = ring.filled(bid, c.result as usize);
            got_bytes(shard, st, id, data);
        }
        ring.give_back(bid);
    } else if c.result == -libc::ENOBUFS {
        // Every buffer in circulation was taken in this pass: the bytes wait in the socket; more
        // buffers circulate from now on (up to `runtime.recv_buffers`), and the read is re-armed below.
        shard.metrics.recv_no_buffers.increment(1);
        // Once per pass: a storm of ENOBUFS in one pass is one shortage, not many. Every buffer in
        // circulation is touched as the ring turns, so fewer keep the shard's reads in cache.
        if !shard.io.grown.replace(true)
            && let Some(ring) = shard.io.bufs.borrow_mut().as_mut()
            && ring.grow()
        {
            shard.metrics.recv_buffers.set(ring.live() as f64);
        }
    } else if c.result == -libc::ECANCELED {
        return;
    } else {
        return eof(shard, st, id);
    }
    if !more && let Some(conn) = st.conns.get(id) {
        shard.io.arm_recv(id, conn.fd);
    }
}

/// A multishot poll posted (the poll path): read until the socket has nothing more.
fn on_poll(shard: &Shard, st: &mut ShardState, id: ConnId, c: Completion) {
    if c.result == -libc::ECANCELED {
        return;
    }
    if c.result < 0 {
        return eof(shard, st, id);
    }
    loop {
        let Some(conn) = st.conns.get(id) else { return };
        if !reading(st, id) {
            break;
        }
        let fd = conn.fd;
        let mut scratch = shard.io.scratch.borrow_mut();
        // SAFETY: reads at most scratch.len() bytes into the scratch buffer.
        let n = unsafe {
            libc::recv(
                fd,
                scratch.as_mut_ptr().cast(),
                scratch.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            let n = n as usize;
            got_bytes(shard, st, id, &mut scratch[..n]);
            if n < scratch.len() {
                break;
            }
            continue;
        }
        drop(scratch);
        if n == 0 {
            return eof(shard, st, id);
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => break,
            Some(libc::EINTR) => continue,
            _ => return eof(shard, st, id),
        }
    }
    if !cqueue::more(c.flags)
        && let Some(conn) = st.conns.get(id)
    {
        shard.io.arm_recv(id, conn.fd);
    }
}

/// True when `id` still reads (exists, and its peer has not finished).
fn reading(st: &ShardState, id: ConnId) -> bool {
    st.conns.get(id).is_some_and(|c| {
        !matches!(
            c.phase,
            Phase::Closing {
                peer_done: true,
                ..
            }
        )
    })
}

/// Bytes read for `id`: handshake or frames; the connection is settled at the end of the pass.
fn got_bytes(shard: &Shard, st: &mut ShardState, id: ConnId, data: &mut [u8]) {
    let now = shard.now_ms();
    if let Some(conn) = st.conns.get_mut(id) {
        conn.last_rx = crate::conn::stamp::Stamp::at(now);
    }
    shard.metrics.bytes_in.increment(data.len() as u64);
    input::on_bytes(shard, st, id, data, now);
    st.conns.wake(id);
}

/// The peer closed (or the socket failed): a closing connection is done reading, any other ends.
fn eof(shard: &Shard, st: &mut ShardState, id: ConnId) {
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    match &mut conn.phase {
        Phase::Closing { peer_done, .. } => {
            *peer_done = true;
            st.conns.wake(id);
        }
        Phase::Handshake(_) => {
            shard.metrics.handshake_failed("io");
            end(shard, st, id, CloseReason::PeerGone);
        }
        Phase::Open | Phase::Answering { .. } => end(shard, st, id, CloseReason::PeerGone),
    }
}

/// A send completed: the queue advances, or the connection ends on an error.
fn on_send(shard: &Shard, st: &mut ShardState, id: ConnId, c: Completion) {
    shard.io.sends.borrow_mut().done(id);
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    if c.result > 0 {
        let n = c.result as usize;
        let frames = conn.out.sent(n);
        shard.metrics.bytes_out.increment(n as u64);
        shard.metrics.frames_out.increment(frames as u64);
        st.conns.wake(id);
    } else {
        conn.out.sent(0);
        let reason = abort_reason(&conn.phase);
        end(shard, st, id, reason);
    }
}

/// Settles every connection listed dirty.
fn settle_dirty(shard: &Shard, st: &mut ShardState) {
    if !st.conns.has_dirty() {
        return;
    }
    let mut ids = shard.io.settling.take();
    st.conns.take_dirty(&mut ids);
    for &id in &ids {
        settle(shard, st, id);
    }
    ids.clear();
    shard.io.settling.replace(ids);
}

/// Starts `id`'s next send, or ends or half-closes it, as its state says.
fn settle(shard: &Shard, st: &mut ShardState, id: ConnId) {
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    conn.dirty = false;
    if conn.abort {
        let reason = abort_reason(&conn.phase);
        return end(shard, st, id, reason);
    }
    if conn.out.sending() {
        return; // its completion settles it again
    }
    let fd = conn.fd;
    let mut sends = shard.io.sends.borrow_mut();
    if let Some(prepared) = conn.out.prepare_send(|| sends.buffer(), WRITE_GATHER) {
        let (ptr, len) = match prepared {
            Prepared::Frame(frame) => sends.frame(id, frame),
            Prepared::Gathered(buf) => sends.gathered(id, buf),
        };
        let sqe = opcode::Send::new(Fd(fd), ptr, len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(Op::Send, id));
        // SAFETY: the bytes are owned by `sends` until this send's completion releases them.
        unsafe { shard.io.push(&sqe) };
        return;
    }
    drop(sends);
    match &mut conn.phase {
        Phase::Closing {
            reason,
            peer_done: true,
            ..
        } => {
            let reason = *reason;
            end(shard, st, id, reason);
        }
        Phase::Closing { write_shut, .. } if !*write_shut => {
            // RFC 6455 §7.1.1: the server closes the TCP connection first. Reading goes on until the
            // peer's EOF or the close deadline, so a peer whose close reply cannot be parsed (after a
            // protocol error) still ends the connection at once by closing its side.
            // A direct syscall, not the ring's SHUTDOWN: that op always runs in an io-wq worker, which
            // looks the descriptor up only when it runs, possibly after this connection's close and
            // the number's reuse by a new connection.
            *write_shut = true;
            // SAFETY: plain syscall on the connection's open descriptor.
            unsafe { libc::shutdown(fd, libc::SHUT_WR) };
        }
        _ => {}
    }
}

/// Ends `id`: out of every table, then its socket cancelled and closed through the ring.
pub fn end(shard: &Shard, st: &mut ShardState, id: ConnId, reason: CloseReason) {
    if let Some(fd) = finish(shard, st, id, reason)
        && fd >= 0
    {
        shard.io.close_fd(fd);
    }
}

/// Closes a descriptor the shard never registered (refused before it had a record).
pub fn drop_fd(fd: RawFd) {
    // SAFETY: `fd` was accepted by this shard and nothing else owns it; dropping closes it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}
