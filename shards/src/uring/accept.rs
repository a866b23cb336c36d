//! The shard's listener on its ring: one multishot accept, admission, and the record of a new
//! connection.
//!
//! Every shard has its own SO_REUSEPORT socket; one multishot accept posts each new connection. An
//! error (out of descriptors included) ends the multishot: the accept is re-armed after a short pause
//! and the pending connections wait in the backlog meanwhile; the shard never gives up. A connection
//! admitted gets its record in the table and its multishot receive, and nothing else.

use std::{
    net::IpAddr,
    os::fd::{FromRawFd, RawFd},
    rc::Rc,
    time::{Duration, Instant},
};

use io_uring::{cqueue, opcode, types::Fd};
use tracing::warn;

use super::{Completion, Op, driver::drop_fd, user_data};
use crate::{
    conn::Conn,
    ids::ConnId,
    shard::{MAX_REJECTING, Shard, ShardState},
    ws::CloseReason,
};

/// The user data of the listener's accept.
fn accept_data() -> u64 {
    user_data(Op::Accept, ConnId::default())
}

/// Arms the accept and starts the task that closes the listener when the shard stops accepting.
pub fn start(shard: &Rc<Shard>) {
    shard.status.shard_accepting();
    arm(shard);
    let s = shard.clone();
    glommio::spawn_local(async move {
        s.stop_accepting.wait().await;
        stop(&s);
    })
    .detach();
}

/// Arms the multishot accept (unless armed or stopped).
fn arm(shard: &Shard) {
    let a = &shard.io.acceptor;
    if a.stopped.get() || a.armed.replace(true) {
        return;
    }
    let sqe = opcode::AcceptMulti::new(Fd(a.fd.get()))
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(accept_data());
    // SAFETY: the op points at no memory of ours.
    unsafe { shard.io.push(&sqe) };
    shard.io.uring.borrow_mut().submit();
}

/// Closes the listener: the armed accept is cancelled, the socket closed through the ring.
fn stop(shard: &Shard) {
    let a = &shard.io.acceptor;
    if a.stopped.replace(true) {
        return;
    }
    let fd = a.fd.replace(-1);
    if fd >= 0 {
        shard.io.close_fd(fd);
        shard.io.uring.borrow_mut().submit();
    }
    shard.status.shard_stopped();
}

/// The accept posted: a new connection, or an error that ends the multishot.
pub fn on_accept(shard: &Shard, st: &mut ShardState, c: Completion) {
    let a = &shard.io.acceptor;
    if !cqueue::more(c.flags) {
        a.armed.set(false);
    }
    if c.result >= 0 {
        if a.stopped.get() {
            drop_fd(c.result);
        } else {
            admit(shard, st, c.result);
        }
        if !a.armed.get() {
            arm(shard);
        }
        return;
    }
    if c.result == -libc::ECANCELED || a.stopped.get() {
        return;
    }
    let errno = -c.result;
    let emfile = errno == libc::EMFILE || errno == libc::ENFILE;
    if emfile {
        shard.metrics.accept_emfile.increment(1);
    } else {
        shard.metrics.accept_other.increment(1);
    }
    if a.last_warning
        .get()
        .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
    {
        let e = std::io::Error::from_raw_os_error(errno);
        warn!(shard = shard.id, error = %e, "accept failed; backing off");
        a.last_warning.set(Some(Instant::now()));
    }
    if a.armed.get() {
        return; // the multishot goes on
    }
    // Out of descriptors: the pending connections wait in the backlog until some close.
    let pause = Duration::from_millis(if emfile { 50 } else { 5 });
    let Some(shard) = shard.me.upgrade() else {
        return;
    };
    glommio::spawn_local(async move {
        glommio::timer::sleep(pause).await;
        arm(&shard);
    })
    .detach();
}

/// Registers an accepted socket: its record, its first deadline, its receive.
fn admit(shard: &Shard, st: &mut ShardState, fd: RawFd) {
    shard.metrics.accepted.increment(1);
    if !st.intake.connects.take(shard.now_ms()) {
        shard.metrics.connect_rate_limited.increment(1);
        if st.intake.rejecting >= MAX_REJECTING {
            return drop_fd(fd);
        }
        st.intake.rejecting += 1;
        let Some(shard) = shard.me.upgrade() else {
            return drop_fd(fd);
        };
        // SAFETY: `fd` is a connected TCP socket this shard just accepted; the stream owns it.
        let stream = unsafe { glommio::net::TcpStream::from_raw_fd(fd) };
        glommio::spawn_local(async move {
            crate::connect_rate::refuse(stream).await;
            shard.state.borrow_mut().intake.rejecting -= 1;
        })
        .detach();
        return;
    }
    let admission = admission(shard, fd);
    if let Err(reason) = admission {
        if st.intake.rejecting >= MAX_REJECTING {
            shard.metrics.closed(reason);
            return drop_fd(fd);
        }
        st.intake.rejecting += 1;
    }
    // SAFETY: `fd` is open for the length of this borrow.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&borrowed);
    let _ = sock.set_tcp_nodelay(true);
    let now = shard.now_ms();
    let mut conn = Conn::new(fd, now, shard.bucket(now), admission.is_err());
    conn.over_ip_limit = admission == Err(CloseReason::IpLimit);
    let id = st.conns.insert(
        conn,
        now + shard.config.handshake_timeout.as_millis() as u64,
    );
    if id.index >= super::MAX_SLOTS {
        // Past what a completion can name: refuse rather than confuse two connections.
        super::driver::end(shard, st, id, CloseReason::OverCapacity);
        return;
    }
    if let Ok(Some(ip_key)) = admission {
        st.intake.ip_keys.insert(id, ip_key);
    }
    shard.metrics.connections_open.increment(1.0);
    shard.io.arm_recv(id, fd);
}

/// Counts a new connection against the node's cap, then its address's (`max_connections_per_ip`).
/// `Ok` carries the per-IP key to release on close (`None` when that cap is off); `Err` the close the
/// connection gets right after its upgrade. A connection refused by either cap holds neither count.
fn admission(shard: &Shard, fd: RawFd) -> Result<Option<IpAddr>, CloseReason> {
    if !shard.status.try_admit() {
        return Err(CloseReason::OverCapacity);
    }
    let max = shard.config.max_connections_per_ip;
    if max == 0 {
        return Ok(None);
    }
    // SAFETY: `fd` is open for the length of this borrow.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&borrowed);
    // The address is read once here (getpeername); a reset connection may no longer have one at close.
    let Some(peer) = sock.peer_addr().ok().and_then(|a| a.as_socket()) else {
        return Ok(None); // already gone: its first read ends it
    };
    match shard.status.per_ip().try_acquire(peer.ip(), max) {
        Some(key) => Ok(Some(key)),
        None => {
            shard.status.release();
            Err(CloseReason::IpLimit)
        }
    }
}
