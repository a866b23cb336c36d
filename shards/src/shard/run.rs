//! The shard's three long-lived tasks (the I/O driver, the inbox drain, the tick), the timer visit of
//! a connection, and the node's control messages.

use std::{
    cell::RefCell,
    os::fd::OwnedFd,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::{error, info};

use super::{Lifecycle, Shard, ShardState};
use crate::{
    NodeStatus,
    config::{Mode, ShardConfig},
    conn::{
        Phase,
        stamp::Stamp,
        table::{ConnTable, Enqueued},
    },
    ids::ConnId,
    inbox::Inbox,
    mesh::Mesh,
    metrics::ShardMetrics,
    signal::LocalSignal,
    ws::CloseReason,
};

/// Runs shard `id` on the current executor until shutdown completes.
pub async fn run(
    id: usize,
    config: Arc<ShardConfig>,
    listener: OwnedFd,
    status: Arc<NodeStatus>,
    inboxes: Arc<[Arc<Inbox>]>,
) {
    let io = match crate::uring::shard_io::ShardIo::new(
        listener,
        config.recv,
        config.ring,
        config.recv_buffers,
        config.recv_buffer_bytes,
    ) {
        Ok(io) => io,
        Err(e) => {
            // Without its ring a shard cannot serve: stop the node with the reason rather than run on
            // with a core that never answers.
            error!(shard = id, error = %e, "cannot set up the shard's io_uring (is io_uring allowed, and RLIMIT_MEMLOCK large enough?)");
            std::process::exit(70);
        }
    };
    info!(
        shard = id,
        ring = ?io.uring.borrow().flavor,
        recv = ?io.path,
        max_buffers = io.bufs.borrow().as_ref().map_or(0, |b| b.entries()),
        buffer_bytes = io.bufs.borrow().as_ref().map_or(0, |b| b.buffer_size()),
        "shard ring ready"
    );
    let metrics = ShardMetrics::register(id);
    let tick = config.tick();
    let conns = ConnTable::new(
        tick.as_millis() as u64,
        config.outbound_queue_bytes,
        config.close_grace.as_millis() as u64,
        metrics.slow_consumer.clone(),
    );
    let state = ShardState {
        conns,
        intake: crate::conn::Intake::new(crate::connect_rate::share(
            config.max_connects_per_sec,
            config.shards,
            id,
        )),
        mesh: Mesh::new(id, inboxes.clone()),
        users: Default::default(),
        channels: Default::default(),
        presence: Default::default(),
        history: crate::history::History::new(config.history),
        lifecycle: Lifecycle::default(),
    };
    metrics
        .recv_buffers
        .set(io.bufs.borrow().as_ref().map_or(0.0, |b| b.live() as f64));
    let shard = Rc::new_cyclic(|me| Shard {
        id,
        inbox: inboxes[id].clone(),
        config,
        status,
        metrics,
        state: RefCell::new(state),
        io,
        me: me.clone(),
        session_prefix: session_prefix(),
        started: Instant::now(),
        stop_accepting: LocalSignal::default(),
        drain_started: LocalSignal::default(),
        done: LocalSignal::default(),
    });
    glommio::spawn_local(crate::uring::driver::run(shard.clone())).detach();
    glommio::spawn_local(inbox_loop(shard.clone())).detach();
    glommio::spawn_local(tick_loop(shard.clone(), tick)).detach();
    shard.done.wait().await;
    info!(shard = id, "shard stopped");
}

/// 24 random bits from the clock and pid.
fn session_prefix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ ((std::process::id() as u64) << 20)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40
}

/// Drains the inbox in batches, forever.
async fn inbox_loop(shard: Rc<Shard>) {
    loop {
        shard.inbox.ready().await;
        {
            let mut st = shard.state.borrow_mut();
            let now = shard.now_ms();
            for _ in 0..1024 {
                let Some(msg) = shard.inbox.pop() else { break };
                crate::route::handle(&shard, &mut st, msg, now);
            }
            // Frames queued by this batch go out now, with the mesh's messages.
            crate::uring::driver::pass(&shard, &mut st);
        }
        glommio::yield_if_needed().await;
    }
}

/// Visits due connections every tick; finishes the shard after shutdown.
async fn tick_loop(shard: Rc<Shard>, tick: Duration) {
    let mut due = Vec::new();
    let mut sleep = tick;
    loop {
        if shard.drain_started.is_fired() {
            glommio::timer::sleep(sleep).await;
        } else {
            // A drain cuts the tick short once; from then on the tick is the drain's interval.
            futures_lite::future::or(glommio::timer::sleep(sleep), shard.drain_started.wait())
                .await;
        }
        let now = shard.now_ms();
        let mut st = shard.state.borrow_mut();
        crate::drain::run::step(&shard, &mut st, now);
        sleep = st
            .lifecycle
            .drain
            .as_ref()
            .map_or(tick, |d| d.interval().min(tick));
        due.clear();
        st.conns.wheel.advance(now, &mut due);
        for &(id, at) in &due {
            visit(&shard, &mut st, id, at, now);
        }
        st.history.users.expire(now);
        st.history.channels.expire(now);
        crate::history::resume::expire(&shard, &mut st, now);
        let streams = st.history.users.len() + st.history.channels.len();
        shard.metrics.history_streams.set(streams as f64);
        let bytes = st.history.users.bytes() + st.history.channels.bytes();
        shard.metrics.history_bytes.set(bytes as f64);
        crate::uring::driver::pass(&shard, &mut st);
        shard.metrics.inbox_depth.set(shard.inbox.len() as f64);
        let dropped = st.mesh.dropped;
        shard
            .metrics
            .inbox_dropped
            .increment(dropped - st.lifecycle.dropped_reported);
        st.lifecycle.dropped_reported = dropped;
        if let Some(deadline) = st.lifecycle.shutdown_deadline_ms
            && (st.conns.is_empty() || now >= deadline)
        {
            drop(st);
            shard.done.fire();
            return;
        }
    }
}

/// A connection's timer visit: every deadline it has is checked here, then it is rescheduled.
fn visit(shard: &Shard, st: &mut ShardState, id: ConnId, at: u64, now: u64) {
    let cfg = &shard.config;
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    if conn.timer_at != at as u32 {
        return; // stale entry: the connection was rescheduled
    }
    let next = match conn.phase {
        Phase::Handshake(_) => {
            let deadline = conn
                .opened
                .plus(cfg.handshake_timeout.as_millis() as u64, now);
            if now >= deadline {
                shard.metrics.handshake_failed("timeout");
                conn.abort = true;
                st.conns.wake(id);
                return;
            }
            deadline
        }
        Phase::Closing { deadline_ms, .. } | Phase::Answering { deadline_ms } => {
            if now >= deadline_ms {
                conn.abort = true;
                st.conns.wake(id);
                return;
            }
            deadline_ms
        }
        Phase::Open => {
            let auth_deadline = conn.opened.plus(cfg.auth_timeout.as_millis() as u64, now);
            let pusher = conn.pusher.is_some();
            let must_identify = conn.user.is_none() && !pusher && cfg.mode == Mode::Protocol;
            if must_identify && now >= auth_deadline {
                st.conns.close(id, CloseReason::IdentifyTimeout, now);
                return;
            }
            let silence_deadline = conn
                .last_rx
                .plus(cfg.heartbeat_timeout.as_millis() as u64, now);
            if now >= silence_deadline {
                st.conns.close(id, CloseReason::HeartbeatTimeout, now);
                return;
            }
            let interval = cfg.heartbeat_interval.as_millis() as u64;
            let mut ping = false;
            if conn.last_ping.elapsed(now) >= interval {
                conn.last_ping = Stamp::at(now);
                ping = true;
            }
            let mut next = conn.last_ping.plus(interval, now).min(silence_deadline);
            if crate::authorize::expired(conn, now, &mut next) {
                st.conns.close(id, CloseReason::TokenExpired, now);
                return;
            }
            if must_identify {
                next = next.min(auth_deadline);
            }
            let ping_frame = if pusher {
                crate::pusher::frames::ping() // Pusher clients answer `pusher:pong`
            } else {
                crate::ws::encode::ping_frame()
            };
            if ping && st.conns.enqueue(id, ping_frame, now) != Enqueued::Queued {
                return; // closing now, with its own deadline scheduled
            }
            next
        }
    };
    st.conns.schedule(id, next);
}
