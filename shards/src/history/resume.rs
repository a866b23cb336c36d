//! The connection's side of a resume: live messages wait while the replay is fetched, then go out
//! after it without what it already carried. The same holds for a user's stream (identify with
//! `resume`) and a channel's (subscribe with `since`): only the reply that opens the replay differs
//! (`ready`, or the `subscribed` ack).
//!
//! Between `identify` (which registers the connection, so live messages start to flow to it) and the
//! replay's arrival, a message can reach the connection both ways: live, and in the replay (it was
//! kept before the history was read). Holding live messages until the replay is here, then dropping
//! the ones whose `seq` the replay covered, gives the client each `seq` once and in order. Only
//! connections that are resuming have an entry, and only for that short window; the bytes held are
//! bounded by the connection's outbound queue bound (a client that falls that far behind is closed as
//! a slow consumer, as it would be anyway).
//!
//! The replay can also run *ahead* of the live path: in cluster mode the history is read on one Redis
//! connection while live messages come over pub/sub on another, so a message the read returned may
//! still be on its way live when the replay goes out. Each finished replay therefore leaves a floor
//! ([`super::resuming`]) for a short while: a live message of that stream numbered up to the
//! replay's end is a copy of one the client has, and is dropped.

use std::sync::Arc;

use bytes::Bytes;

use super::{
    Outcome,
    resuming::{Resuming, carries_epoch},
};
use crate::{
    conn::table::ConnTable,
    ids::ConnId,
    messages::HistoryMsg,
    protocol::encode,
    shard::{Shard, ShardState},
    ws::CloseReason,
};

/// Handles a history message: a replay arrived for a connection of this shard.
pub fn handle(shard: &Shard, st: &mut ShardState, msg: HistoryMsg, now: u64) {
    match msg {
        HistoryMsg::UserResumed {
            conn,
            outcome,
            frames,
        } => finish(shard, st, conn, outcome, frames, now),
        HistoryMsg::ChannelResumed {
            conn,
            channel,
            outcome,
            frames,
        } => finish_channel(shard, st, conn, &channel, outcome, frames, now),
    }
}

/// Delivers a live message of `seq` to `conn`: held while the connection is resuming (up to `bound`
/// bytes, beyond which it is closed as a slow consumer), dropped when its replay already carried it,
/// queued otherwise. Returns true when dropped as a copy.
pub fn deliver(
    resuming: &mut Resuming,
    conns: &mut ConnTable,
    bound: usize,
    conn: ConnId,
    seq: u64,
    frame: Bytes,
    now: u64,
) -> bool {
    if resuming.contains(conn) {
        if !resuming.hold(conn, seq, frame, bound) {
            resuming.forget(conn);
            conns.close(conn, CloseReason::SlowConsumer, now);
        }
        return false;
    }
    if resuming.below_floor(conn, None, seq, &frame) {
        return true;
    }
    conns.enqueue(conn, frame, now);
    false
}

/// Delivers a live publication of `seq` on `channel` to `conn`: held while the connection is
/// resuming that channel, dropped when its replay already carried it, queued otherwise. Returns true
/// when dropped as a copy.
#[allow(clippy::too_many_arguments)]
pub fn deliver_channel(
    resuming: &mut Resuming,
    conns: &mut ConnTable,
    bound: usize,
    conn: ConnId,
    channel: &str,
    seq: u64,
    frame: Bytes,
    now: u64,
) -> bool {
    if let Some(w) = resuming.channel_mut(conn, channel) {
        if !w.hold(seq, frame, bound) {
            resuming.forget(conn);
            conns.close(conn, CloseReason::SlowConsumer, now);
        }
        return false;
    }
    if resuming.below_floor(conn, Some(channel), seq, &frame) {
        return true;
    }
    conns.enqueue(conn, frame, now);
    false
}

/// Answers the resumes whose replay did not come within [`RESUME_WAIT_MS`](super::resuming::RESUME_WAIT_MS) with `unavailable` (the
/// held live messages follow): from the shard's tick.
pub fn expire(shard: &Shard, st: &mut ShardState, now: u64) {
    st.history.resuming.lapse_floors(now);
    if st.history.resuming.is_empty() {
        return;
    }
    for (conn, channel) in st.history.resuming.overdue(now) {
        tracing::warn!(
            ?conn,
            channel = channel.as_deref(),
            "no replay came; answering unavailable"
        );
        let outcome = Outcome::unavailable();
        match channel {
            None if st.history.resuming.waits_ready(conn) => {
                let degraded = Some(crate::admit::ClusterState::Degraded);
                crate::admit::decide::finish_ready(shard, st, conn, degraded, now)
            }
            None => finish(shard, st, conn, outcome, Vec::new(), now),
            Some(ch) => finish_channel(shard, st, conn, &ch, outcome, Vec::new(), now),
        }
    }
}

/// The replay of `channel` for `conn` arrived: the `subscribed` ack with the outcome, the replayed
/// frames, then the held live publications the replay did not carry.
pub fn finish_channel(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    channel: &str,
    outcome: Outcome,
    frames: Vec<Bytes>,
    now: u64,
) {
    let Some(waiting) = st.history.resuming.take_channel(conn, channel) else {
        return; // unsubscribed or closed meanwhile
    };
    let ack = encode::subscribed_resumed(waiting.id.as_deref(), &outcome);
    st.conns.enqueue(conn, ack, now);
    shard.metrics.resumes(true, outcome.gap, outcome.replayed);
    let held = waiting.into_held();
    replay(
        shard,
        st,
        conn,
        Some(Arc::from(channel)),
        &outcome,
        frames,
        held,
        now,
    );
}

/// The replay for `conn` arrived: `ready` with the outcome, the replayed frames, then the held live
/// messages the replay did not carry.
pub fn finish(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    outcome: Outcome,
    frames: Vec<Bytes>,
    now: u64,
) {
    let Some(waiting) = st.history.resuming.take_user(conn) else {
        return; // closed meanwhile
    };
    let Some(c) = st.conns.get(conn) else {
        return;
    };
    let Some(user) = c.user.clone() else {
        return;
    };
    let session = format!("{:016x}", c.session);
    let heartbeat_ms = shard.config.heartbeat_interval.as_millis() as u64;
    let ready = encode::ready_resumed(
        waiting.id.as_deref(),
        &user,
        &session,
        &shard.config.node_id,
        shard.id,
        heartbeat_ms,
        &outcome,
    );
    st.conns.enqueue(conn, ready, now);
    shard.metrics.resumes(false, outcome.gap, outcome.replayed);
    let held = waiting.into_held();
    replay(shard, st, conn, None, &outcome, frames, held, now);
}

/// After the reply that opens a replay of `stream` (the user's: `None`): queues the replayed
/// `frames`, then the `held` live ones the replay did not carry (counting the others as duplicates),
/// and leaves the stream's floor for the live copies still on their way.
#[allow(clippy::too_many_arguments)]
fn replay(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    stream: Option<Arc<str>>,
    outcome: &Outcome,
    frames: Vec<Bytes>,
    held: Vec<(u64, Bytes)>,
    now: u64,
) {
    let conns = &mut st.conns;
    for frame in frames {
        conns.enqueue(conn, frame, now);
    }
    // Held messages numbered up to the replay's end were in it (or are older than the client's
    // position); unnumbered ones (sent while Redis was unreachable) were not.
    let mut dropped = 0u64;
    for (seq, frame) in held {
        let covered = seq != 0
            && seq <= outcome.seq
            && outcome
                .epoch
                .as_deref()
                .is_some_and(|e| carries_epoch(&frame, e));
        if !covered {
            conns.enqueue(conn, frame, now);
        } else {
            dropped += 1;
        }
    }
    shard.metrics.resume_duplicates.increment(dropped);
    if let Some(epoch) = &outcome.epoch {
        st.history
            .resuming
            .set_floor(conn, stream, outcome.seq, epoch, now);
    }
}
