//! The connection's side of a resume: live messages wait while the replay is fetched, then go out
//! after it without what it already carried.
//!
//! Between `identify` (which registers the connection, so live messages start to flow to it) and the
//! replay's arrival, a message can reach the connection both ways: live, and in the replay (it was
//! kept before the history was read). Holding live messages until the replay is here, then dropping
//! the ones whose `seq` the replay covered, gives the client each `seq` once and in order. Only
//! connections that are resuming have an entry, and only for that short window; the bytes held are
//! bounded by the connection's outbound queue bound (a client that falls that far behind is closed as
//! a slow consumer, as it would be anyway).

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;

use super::Outcome;
use crate::{
    conn::table::ConnTable,
    ids::ConnId,
    protocol::encode,
    shard::{Shard, ShardState},
    ws::CloseReason,
};

/// A connection waiting for its replay.
#[derive(Debug, Default)]
pub struct Waiting {
    /// The identify request's `id`, for the `ready` reply.
    pub id: Option<Arc<str>>,
    /// Live messages that arrived meanwhile: (`seq`, frame); `seq` 0 for an unnumbered message.
    held: Vec<(u64, Bytes)>,
    /// Bytes in `held`.
    bytes: usize,
}

/// The connections of a shard waiting for their replay.
#[derive(Debug, Default)]
pub struct Resuming {
    by_conn: HashMap<ConnId, Waiting>,
}

impl Resuming {
    /// `conn` starts resuming; `id` is its identify request's.
    pub fn start(&mut self, conn: ConnId, id: Option<Arc<str>>) {
        self.by_conn.insert(
            conn,
            Waiting {
                id,
                ..Default::default()
            },
        );
    }

    /// True when `conn` waits for its replay.
    pub fn contains(&self, conn: ConnId) -> bool {
        !self.by_conn.is_empty() && self.by_conn.contains_key(&conn)
    }

    /// Holds a live message for `conn`; false when that would exceed `bound` bytes (the caller closes
    /// the connection as a slow consumer).
    pub fn hold(&mut self, conn: ConnId, seq: u64, frame: Bytes, bound: usize) -> bool {
        let Some(w) = self.by_conn.get_mut(&conn) else {
            return true;
        };
        if w.bytes + frame.len() > bound {
            return false;
        }
        w.bytes += frame.len();
        w.held.push((seq, frame));
        true
    }

    /// `conn` is gone.
    pub fn forget(&mut self, conn: ConnId) {
        self.by_conn.remove(&conn);
    }

    /// Connections waiting.
    pub fn len(&self) -> usize {
        self.by_conn.len()
    }

    /// True when none waits.
    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }
}

/// Delivers a live message of `seq` to `conn`: held while the connection is resuming (up to `bound`
/// bytes, beyond which it is closed as a slow consumer), queued otherwise.
pub fn deliver(
    resuming: &mut Resuming,
    conns: &mut ConnTable,
    bound: usize,
    conn: ConnId,
    seq: u64,
    frame: Bytes,
    now: u64,
) {
    if resuming.contains(conn) {
        if !resuming.hold(conn, seq, frame, bound) {
            resuming.forget(conn);
            conns.close(conn, CloseReason::SlowConsumer, now);
        }
        return;
    }
    conns.enqueue(conn, frame, now);
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
    let Some(waiting) = st.resuming.by_conn.remove(&conn) else {
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
    shard.metrics.resumes(outcome.gap, outcome.replayed);
    for frame in frames {
        st.conns.enqueue(conn, frame, now);
    }
    // Held messages numbered up to the replay's end were in it (or are older than the client's
    // position); unnumbered ones (sent while Redis was unreachable) were not.
    let mut dropped = 0u64;
    for (seq, frame) in waiting.held {
        let covered = seq != 0
            && seq <= outcome.seq
            && outcome
                .epoch
                .as_deref()
                .is_some_and(|e| carries_epoch(&frame, e));
        if !covered {
            st.conns.enqueue(conn, frame, now);
        } else {
            dropped += 1;
        }
    }
    shard.metrics.resume_duplicates.increment(dropped);
}

/// True when a numbered message frame belongs to stream `epoch` (its `"epoch"` comes right after the
/// `seq`, within the first bytes).
fn carries_epoch(frame: &[u8], epoch: &str) -> bool {
    let head = &frame[..frame.len().min(80)];
    let needle = format!("\"epoch\":\"{epoch}\"");
    head.windows(needle.len()).any(|w| w == needle.as_bytes())
}
