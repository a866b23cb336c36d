//! The task of one connection: a hand-written future that owns the socket.
//!
//! One `poll` reads (into the shard's scratch buffer, through glommio's nonblocking recv or a
//! buffer-less io_uring poll when nothing is ready), decodes and dispatches, then writes what is queued
//! (gathered into one send when several frames wait). Reads and writes use separate glommio sources on
//! the same socket, so both can be pending at once without splitting the stream. The future holds only
//! the socket and two ids: an idle connection costs its record, this future and the kernel's socket.

use std::{
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use bytes::Bytes;
use std::os::fd::AsRawFd;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::Phase;
use crate::{
    config::Mode,
    dispatch,
    ids::ConnId,
    shard::{Shard, ShardState, WRITE_GATHER},
    ws::{
        CloseReason,
        decode::{DecodeLimits, Event, Flow},
        encode::{close_reply, frame, pong_frame},
        handshake::{self, HandshakeLimits, Parse},
    },
};

/// Reads per poll before the task yields to others (fairness under a flood).
const MAX_READS_PER_POLL: usize = 4;

/// The future driving one connection.
pub struct ConnTask {
    /// The shard that owns the connection.
    shard: Rc<Shard>,
    /// The connection's id in the shard's table.
    id: ConnId,
    /// The socket; dropped (closed) when the task ends.
    stream: TcpStream,
}

impl ConnTask {
    /// A task for the accepted `stream`, registered as `id`.
    pub fn new(shard: Rc<Shard>, id: ConnId, stream: TcpStream) -> Self {
        ConnTask { shard, id, stream }
    }
}

/// What one poll concluded.
enum Step {
    /// Waiting for the socket, a timer or a queued frame.
    Pending,
    /// The connection is over, for this reason.
    Done(CloseReason),
}

impl Future for ConnTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let ConnTask { shard, id, stream } = self.get_mut();
        let shard: &Shard = shard;
        let mut st = shard.state.borrow_mut();
        let step = drive(shard, &mut st, *id, stream, cx);
        let out = match step {
            Step::Pending => Poll::Pending,
            Step::Done(reason) => {
                finish(shard, &mut st, *id, reason);
                Poll::Ready(())
            }
        };
        st.mesh.flush();
        out
    }
}

/// Reads, dispatches and writes as far as the socket allows.
fn drive(
    shard: &Shard,
    st: &mut ShardState,
    id: ConnId,
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
) -> Step {
    let now = shard.now_ms();
    {
        let Some(conn) = st.conns.get_mut(id) else {
            return Step::Done(CloseReason::Internal);
        };
        if conn.waker.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
            conn.waker = Some(cx.waker().clone());
        }
    }
    let mut reads = 0;
    loop {
        let Some(conn) = st.conns.get_mut(id) else {
            return Step::Done(CloseReason::Internal);
        };
        if conn.abort {
            return Step::Done(abort_reason(&conn.phase));
        }
        if matches!(
            conn.phase,
            Phase::Closing {
                peer_done: true,
                ..
            }
        ) {
            break;
        }
        if reads == MAX_READS_PER_POLL {
            cx.waker().wake_by_ref();
            break;
        }
        let mut io = shard.io.borrow_mut();
        match Pin::new(&mut *stream).poll_read(cx, &mut io.read) {
            Poll::Pending => break,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => match &mut conn.phase {
                Phase::Closing { peer_done, .. } => {
                    *peer_done = true;
                    break;
                }
                Phase::Handshake(_) => {
                    shard.metrics.handshake_failed("io");
                    return Step::Done(CloseReason::PeerGone);
                }
                Phase::Open | Phase::Answering { .. } => return Step::Done(CloseReason::PeerGone),
            },
            Poll::Ready(Ok(n)) => {
                reads += 1;
                conn.last_rx_ms = now;
                shard.metrics.bytes_in.increment(n as u64);
                on_bytes(shard, st, id, &mut io.read[..n], now);
            }
        }
    }
    loop {
        let Some(conn) = st.conns.get_mut(id) else {
            return Step::Done(CloseReason::Internal);
        };
        if conn.out.is_empty() {
            break;
        }
        let mut io = shard.io.borrow_mut();
        let data = conn.out.gather(&mut io.write, WRITE_GATHER);
        match Pin::new(&mut *stream).poll_write(cx, data) {
            Poll::Ready(Ok(n)) if n > 0 => {
                let frames = conn.out.advance(n);
                shard.metrics.bytes_out.increment(n as u64);
                shard.metrics.frames_out.increment(frames as u64);
            }
            Poll::Ready(_) => return Step::Done(abort_reason(&conn.phase)),
            Poll::Pending => break,
        }
    }
    let Some(conn) = st.conns.get_mut(id) else {
        return Step::Done(CloseReason::Internal);
    };
    let flushed = conn.out.is_empty();
    match &mut conn.phase {
        Phase::Closing {
            reason,
            peer_done: true,
            ..
        } if flushed => Step::Done(*reason),
        Phase::Closing { write_shut, .. } if flushed && !*write_shut => {
            *write_shut = true;
            shutdown_write(stream);
            Step::Pending
        }
        _ => Step::Pending,
    }
}

/// Sends FIN once the close frame is out (RFC 6455 §7.1.1: the server closes the TCP connection first).
/// Reading goes on until the peer's EOF or the close deadline, so a peer whose close reply cannot be
/// parsed (after a protocol error) still ends the connection at once by closing its side.
fn shutdown_write(stream: &TcpStream) {
    // SAFETY: the descriptor belongs to `stream`, which outlives this borrow.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Write);
}

/// The reason recorded when a connection ends without completing its close.
fn abort_reason(phase: &Phase) -> CloseReason {
    match phase {
        Phase::Closing { reason, .. } => *reason,
        _ => CloseReason::PeerGone,
    }
}

/// Bytes just read: handshake or frames, depending on the phase.
fn on_bytes(shard: &Shard, st: &mut ShardState, id: ConnId, data: &mut [u8], now: u64) {
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    match conn.phase {
        Phase::Handshake(_) => handshake_bytes(shard, st, id, data, now),
        Phase::Closing { desync: true, .. } | Phase::Answering { .. } => {} // discard
        _ => frames(shard, st, id, data, now),
    }
}

/// Accumulates the upgrade request and answers it.
fn handshake_bytes(shard: &Shard, st: &mut ShardState, id: ConnId, data: &[u8], now: u64) {
    let cfg = &shard.config;
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    let Phase::Handshake(buf) = &mut conn.phase else {
        return;
    };
    if crate::pusher::http::is_api(buf, data) {
        return crate::pusher::http::on_bytes(shard, st, id, data, now);
    }
    // Never hold more than one byte over the limit (enough to tell "too large"); what a read brought
    // past it can only be frames pipelined after a complete head, kept aside in `tail`.
    let room = (cfg.max_header_bytes + 1).saturating_sub(buf.len());
    let (head, tail) = data.split_at(data.len().min(room));
    buf.extend_from_slice(head);
    let limits = HandshakeLimits {
        max_header_bytes: cfg.max_header_bytes,
    };
    let parsed = handshake::parse_request(buf, &limits);
    match parsed {
        Ok(Parse::Partial) => {}
        Ok(Parse::Done { upgrade, consumed }) => {
            let mut rest = buf.split_off(consumed);
            rest.extend_from_slice(tail);
            conn.phase = Phase::Open;
            conn.last_rx_ms = now;
            conn.last_ping_ms = now;
            conn.out
                .push(Bytes::from(handshake::accept_response(&upgrade.accept_key)));
            let origin_ok = cfg.allowed_origins.is_empty()
                || upgrade
                    .origin
                    .as_deref()
                    .is_some_and(|o| cfg.allowed_origins.iter().any(|a| a == o));
            let refused = conn.over_capacity.then_some(if conn.over_ip_limit {
                CloseReason::IpLimit
            } else {
                CloseReason::OverCapacity
            });
            // First visit: identify and heartbeat deadlines from now on.
            let first = now + cfg.auth_timeout.min(cfg.heartbeat_interval).as_millis() as u64;
            st.conns.schedule(id, first);
            if upgrade.pusher.is_some() && !origin_ok {
                st.conns.close(id, CloseReason::Policy, now);
            } else if let Some(target) = &upgrade.pusher {
                // Pusher's own refusals (4001, 4003, 4100, ...) come with `pusher:error`.
                let protocol = target.protocol.as_deref();
                crate::pusher::conn::open(shard, st, id, (&target.key, protocol), now);
                if st.conns.get(id).is_some_and(|c| c.pusher.is_some()) && !rest.is_empty() {
                    frames(shard, st, id, &mut rest, now);
                }
            } else if let Some(reason) = refused {
                st.conns.close(id, reason, now);
            } else if !origin_ok {
                st.conns.close(id, CloseReason::Policy, now);
            } else if !rest.is_empty() {
                frames(shard, st, id, &mut rest, now);
            }
        }
        Err(reject) => {
            shard.metrics.handshake_failed(reject.metric_reason());
            conn.out
                .push(Bytes::from_static(handshake::reject_response(&reject)));
            let deadline_ms = now + cfg.close_grace.as_millis() as u64;
            conn.phase = Phase::Closing {
                reason: CloseReason::PeerGone,
                deadline_ms,
                peer_done: true,
                desync: true,
                write_shut: false,
            };
            st.conns.schedule(id, deadline_ms);
        }
    }
}

/// Decodes frames and acts on each.
fn frames(shard: &Shard, st: &mut ShardState, id: ConnId, data: &mut [u8], now: u64) {
    let cfg = &shard.config;
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    let mut decoder = std::mem::take(&mut conn.decoder);
    let limits = DecodeLimits {
        max_frame_bytes: cfg.max_frame_bytes,
        max_message_bytes: cfg.max_message_bytes,
        max_fragments: cfg.max_fragments,
    };
    let result = decoder.feed(data, limits, |ev| on_event(shard, st, id, ev, now));
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    match result {
        Ok(()) => conn.decoder = decoder,
        Err(e) => {
            st.conns.close(id, e.close_reason(), now);
            if let Some(Phase::Closing { desync, .. }) = st.conns.get_mut(id).map(|c| &mut c.phase)
            {
                *desync = true;
            }
        }
    }
}

/// One decoded event.
fn on_event(shard: &Shard, st: &mut ShardState, id: ConnId, ev: Event<'_>, now: u64) -> Flow {
    shard.metrics.frames_in.increment(1);
    let Some(conn) = st.conns.get_mut(id) else {
        return Flow::Stop;
    };
    let closing = conn.is_closing();
    match ev {
        Event::Text(_) | Event::Binary(_) if closing => {}
        Event::Text(payload) if shard.config.mode == Mode::Echo => {
            st.conns
                .enqueue(id, frame(OpCode::Data(Data::Text), payload), now);
        }
        Event::Binary(payload) if shard.config.mode == Mode::Echo => {
            st.conns
                .enqueue(id, frame(OpCode::Data(Data::Binary), payload), now);
        }
        Event::Text(payload) | Event::Binary(payload) if conn.pusher.is_some() => {
            crate::pusher::dispatch::on_message(shard, st, id, payload, now)
        }
        Event::Text(payload) | Event::Binary(payload) => {
            dispatch::on_message(shard, st, id, payload, now)
        }
        Event::Ping(_) if !closing && !conn.pings.allow(shard.config.max_pings_per_sec, now) => {
            return ping_flood(st, id, now);
        }
        Event::Ping(payload) => {
            if !closing {
                st.conns.enqueue(id, pong_frame(payload), now);
            }
        }
        Event::Pong => {}
        Event::Close(code) => {
            match &mut conn.phase {
                Phase::Closing { peer_done, .. } => *peer_done = true,
                _ => {
                    let deadline_ms = now + shard.config.close_grace.as_millis() as u64;
                    conn.out.push(close_reply(code));
                    conn.phase = Phase::Closing {
                        reason: CloseReason::Normal,
                        deadline_ms,
                        peer_done: true,
                        desync: true,
                        write_shut: false,
                    };
                    st.conns.schedule(id, deadline_ms);
                }
            }
            return Flow::Stop;
        }
    }
    Flow::Continue
}

/// Pings over `limits.max_pings_per_sec`: close 1008. Each ping costs a pong written back, so a flood
/// is stopped rather than answered; what follows in the input is discarded (a lingering close). Pongs
/// are not counted: they answer the server's own heartbeat and cost no reply.
fn ping_flood(st: &mut ShardState, id: ConnId, now: u64) -> Flow {
    st.conns.close(id, CloseReason::PingFlood, now);
    if let Some(Phase::Closing { desync, .. }) = st.conns.get_mut(id).map(|c| &mut c.phase) {
        *desync = true;
    }
    Flow::Stop
}

/// Removes a finished connection from every table and counts it.
fn finish(shard: &Shard, st: &mut ShardState, id: ConnId, reason: CloseReason) {
    let Some(conn) = st.conns.remove(id) else {
        return;
    };
    shard.metrics.closed(reason);
    shard.metrics.connections_open.decrement(1.0);
    if conn.over_capacity {
        st.rejecting -= 1;
    } else {
        shard.status.release();
    }
    if !st.ip_keys.is_empty()
        && let Some(key) = st.ip_keys.remove(&id)
    {
        shard.status.per_ip().release(key);
    }
    let now = shard.now_ms();
    if let Some(user) = conn.user {
        crate::route::conn_gone(shard, st, id, user, conn.subs, now);
    } else if let Some(pusher) = conn.pusher {
        crate::pusher::conn::gone(shard, st, id, *pusher, conn.subs, now);
    }
}
