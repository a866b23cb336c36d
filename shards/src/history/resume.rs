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
    /// Connections resuming their user's stream.
    by_conn: HashMap<ConnId, Waiting>,
    /// Connections resuming channel streams: (channel, waiting) per connection; a connection rarely
    /// resumes more than a few channels at once, so a short list is searched.
    by_sub: HashMap<ConnId, Vec<(Arc<str>, Waiting)>>,
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
        match self.by_conn.get_mut(&conn) {
            Some(w) => w.hold(seq, frame, bound),
            None => true,
        }
    }

    /// `conn` starts resuming `channel`; `id` is its subscribe request's.
    pub fn start_channel(&mut self, conn: ConnId, channel: Arc<str>, id: Option<Arc<str>>) {
        let waiting = Waiting {
            id,
            ..Default::default()
        };
        let subs = self.by_sub.entry(conn).or_default();
        match subs.iter_mut().find(|(c, _)| *c == channel) {
            Some(slot) => slot.1 = waiting,
            None => subs.push((channel, waiting)),
        }
    }

    /// The waiting entry of `conn` for `channel`.
    fn channel_mut(&mut self, conn: ConnId, channel: &str) -> Option<&mut Waiting> {
        if self.by_sub.is_empty() {
            return None;
        }
        let subs = self.by_sub.get_mut(&conn)?;
        subs.iter_mut()
            .find(|(c, _)| &**c == channel)
            .map(|(_, w)| w)
    }

    /// Takes the waiting entry of `conn` for `channel`.
    fn take_channel(&mut self, conn: ConnId, channel: &str) -> Option<Waiting> {
        let subs = self.by_sub.get_mut(&conn)?;
        let at = subs.iter().position(|(c, _)| &**c == channel)?;
        let (_, waiting) = subs.swap_remove(at);
        if subs.is_empty() {
            self.by_sub.remove(&conn);
        }
        Some(waiting)
    }

    /// `conn` left `channel` (or is gone) before its replay arrived.
    pub fn forget_channel(&mut self, conn: ConnId, channel: &str) {
        self.take_channel(conn, channel);
    }

    /// `conn` is gone.
    pub fn forget(&mut self, conn: ConnId) {
        self.by_conn.remove(&conn);
        self.by_sub.remove(&conn);
    }

    /// Resumes waiting (user and channel streams).
    pub fn len(&self) -> usize {
        self.by_conn.len() + self.by_sub.values().map(Vec::len).sum::<usize>()
    }

    /// True when none waits.
    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty() && self.by_sub.is_empty()
    }
}

impl Waiting {
    /// Holds `frame`; false when that would exceed `bound` bytes.
    fn hold(&mut self, seq: u64, frame: Bytes, bound: usize) -> bool {
        if self.bytes + frame.len() > bound {
            return false;
        }
        self.bytes += frame.len();
        self.held.push((seq, frame));
        true
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

/// Delivers a live publication of `seq` on `channel` to `conn`: held while the connection is
/// resuming that channel, queued otherwise.
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
) {
    if let Some(w) = resuming.channel_mut(conn, channel) {
        if !w.hold(seq, frame, bound) {
            resuming.forget(conn);
            conns.close(conn, CloseReason::SlowConsumer, now);
        }
        return;
    }
    conns.enqueue(conn, frame, now);
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
    let Some(waiting) = st.resuming.take_channel(conn, channel) else {
        return; // unsubscribed or closed meanwhile
    };
    let ack = encode::subscribed_resumed(waiting.id.as_deref(), &outcome);
    st.conns.enqueue(conn, ack, now);
    shard.metrics.resumes(true, outcome.gap, outcome.replayed);
    let dropped = replay(&mut st.conns, conn, &outcome, frames, waiting.held, now);
    shard.metrics.resume_duplicates.increment(dropped);
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
    shard.metrics.resumes(false, outcome.gap, outcome.replayed);
    let dropped = replay(&mut st.conns, conn, &outcome, frames, waiting.held, now);
    shard.metrics.resume_duplicates.increment(dropped);
}

/// Queues the replayed `frames`, then the `held` live ones the replay did not carry; returns how many
/// held ones were dropped as duplicates.
fn replay(
    conns: &mut ConnTable,
    conn: ConnId,
    outcome: &Outcome,
    frames: Vec<Bytes>,
    held: Vec<(u64, Bytes)>,
    now: u64,
) -> u64 {
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
    dropped
}

/// True when a numbered message frame belongs to stream `epoch` (its `"epoch"` comes right after the
/// `seq`, within the first bytes).
fn carries_epoch(frame: &[u8], epoch: &str) -> bool {
    let head = &frame[..frame.len().min(80)];
    let needle = format!("\"epoch\":\"{epoch}\"");
    head.windows(needle.len()).any(|w| w == needle.as_bytes())
}
