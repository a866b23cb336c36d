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
//! still be on its way live when the replay goes out. Each finished replay therefore leaves a
//! [`Floor`] for a short while: a live message of that stream numbered up to the replay's end is a
//! copy of one the client has, and is dropped.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use bytes::Bytes;

use super::Outcome;
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

/// Longest a connection waits for its replay. The answer can be lost on the way (a shard inbox full
/// under overload); the connection then gets its reply with `unavailable` rather than never.
pub const RESUME_WAIT_MS: u64 = 10_000;

/// How long a finished replay keeps dropping late live copies of what it carried. A live copy lags
/// the history read by a Redis round trip or two; this leaves room for an overloaded node.
pub const FLOOR_MS: u64 = 10_000;

/// The end of a finished replay: live messages of the stream numbered up to `seq` in `epoch` are
/// copies of replayed ones.
#[derive(Debug)]
struct Floor {
    seq: u64,
    epoch: Box<str>,
    /// When it stops applying, ms.
    until_ms: u64,
}

/// A stream of a connection: its user's (`None`) or a channel's.
type StreamKey = Option<Arc<str>>;

/// A connection waiting for its replay.
#[derive(Debug, Default)]
pub struct Waiting {
    /// The identify (subscribe) request's `id`, for the `ready` (`subscribed`) reply.
    pub id: Option<Arc<str>>,
    /// When it started waiting, ms.
    since_ms: u64,
    /// Live messages that arrived meanwhile: (`seq`, frame); `seq` 0 for an unnumbered message.
    held: Vec<(u64, Bytes)>,
    /// Bytes in `held`.
    bytes: usize,
    /// Waiting for its admission (`ready` alone, [`crate::admit`]), not for a replay.
    ready_only: bool,
}

/// The connections of a shard waiting for their replay.
#[derive(Debug, Default)]
pub struct Resuming {
    /// Connections resuming their user's stream.
    by_conn: HashMap<ConnId, Waiting>,
    /// Connections resuming channel streams: (channel, waiting) per connection; a connection rarely
    /// resumes more than a few channels at once, so a short list is searched.
    by_sub: HashMap<ConnId, Vec<(Arc<str>, Waiting)>>,
    /// Connections whose replay went out lately: the floor per stream (a connection rarely has more
    /// than one or two).
    floors: HashMap<ConnId, Vec<(StreamKey, Floor)>>,
    /// When each floor lapses, in the order they were set (which is time order).
    floor_deadlines: VecDeque<(u64, ConnId, StreamKey)>,
}

impl Resuming {
    /// `conn` starts resuming; `id` is its identify request's.
    pub fn start(&mut self, conn: ConnId, id: Option<Arc<str>>, now: u64) {
        self.by_conn.insert(
            conn,
            Waiting {
                id,
                since_ms: now,
                ..Default::default()
            },
        );
    }

    /// `conn` waits for its admission before `ready` ([`crate::admit`]); its live messages are held
    /// meanwhile as a resuming connection's are.
    pub fn start_ready(&mut self, conn: ConnId, id: Option<Arc<str>>, now: u64) {
        self.by_conn.insert(
            conn,
            Waiting {
                id,
                since_ms: now,
                ready_only: true,
                ..Default::default()
            },
        );
    }

    /// Takes `conn`'s wait for its admission (`None` when it has none).
    pub fn take_ready(&mut self, conn: ConnId) -> Option<Waiting> {
        if !self.by_conn.get(&conn)?.ready_only {
            return None;
        }
        self.by_conn.remove(&conn)
    }

    /// The `id` of the request `conn` waits to be answered for (identify's), and ends every wait of
    /// `conn` (it is refused).
    pub fn refuse(&mut self, conn: ConnId) -> Option<Arc<str>> {
        let id = self.by_conn.remove(&conn).and_then(|w| w.id);
        self.forget(conn);
        id
    }

    /// True when `conn` waits for its admission rather than a replay.
    fn waits_ready(&self, conn: ConnId) -> bool {
        self.by_conn.get(&conn).is_some_and(|w| w.ready_only)
    }

    /// The resumes that have waited longer than [`RESUME_WAIT_MS`]: (connection, `None` for its
    /// user's stream or the channel). Only resuming connections are visited.
    pub fn overdue(&self, now: u64) -> Vec<(ConnId, Option<Arc<str>>)> {
        let late = |w: &Waiting| now.saturating_sub(w.since_ms) > RESUME_WAIT_MS;
        let users = self
            .by_conn
            .iter()
            .filter(|(_, w)| late(w))
            .map(|(c, _)| (*c, None));
        let channels = self.by_sub.iter().flat_map(|(c, subs)| {
            subs.iter()
                .filter(|(_, w)| late(w))
                .map(|(ch, _)| (*c, Some(ch.clone())))
        });
        users.chain(channels).collect()
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
    pub fn start_channel(
        &mut self,
        conn: ConnId,
        channel: Arc<str>,
        id: Option<Arc<str>>,
        now: u64,
    ) {
        let waiting = Waiting {
            id,
            since_ms: now,
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

    /// `conn` left `channel` (or is gone) before its replay arrived, or after.
    pub fn forget_channel(&mut self, conn: ConnId, channel: &str) {
        self.take_channel(conn, channel);
        self.remove_floor(conn, Some(channel));
    }

    /// `conn` is gone.
    pub fn forget(&mut self, conn: ConnId) {
        self.by_conn.remove(&conn);
        self.by_sub.remove(&conn);
        self.floors.remove(&conn);
    }

    /// The replay of `stream` for `conn` went out up to `seq` of `epoch`: late live copies are dropped
    /// until `now + FLOOR_MS`.
    fn set_floor(&mut self, conn: ConnId, stream: StreamKey, seq: u64, epoch: &str, now: u64) {
        let until_ms = now + FLOOR_MS;
        let floor = Floor {
            seq,
            epoch: epoch.into(),
            until_ms,
        };
        let floors = self.floors.entry(conn).or_default();
        match floors.iter_mut().find(|(k, _)| *k == stream) {
            Some(slot) => slot.1 = floor,
            None => floors.push((stream.clone(), floor)),
        }
        self.floor_deadlines.push_back((until_ms, conn, stream));
    }

    fn remove_floor(&mut self, conn: ConnId, stream: Option<&str>) {
        let Some(floors) = self.floors.get_mut(&conn) else {
            return;
        };
        floors.retain(|(k, _)| k.as_deref() != stream);
        if floors.is_empty() {
            self.floors.remove(&conn);
        }
    }

    /// True when a live `frame` of `seq` on `stream` is a copy of one `conn`'s replay carried. A
    /// stream's live messages come in `seq` order, so the first one past the floor lifts it.
    fn below_floor(&mut self, conn: ConnId, stream: Option<&str>, seq: u64, frame: &[u8]) -> bool {
        if self.floors.is_empty() || seq == 0 {
            return false;
        }
        let Some(floors) = self.floors.get(&conn) else {
            return false;
        };
        let Some((_, floor)) = floors.iter().find(|(k, _)| k.as_deref() == stream) else {
            return false;
        };
        if !carries_epoch(frame, &floor.epoch) {
            return false;
        }
        if seq <= floor.seq {
            return true;
        }
        self.remove_floor(conn, stream);
        false
    }

    /// Lifts the floors that have lapsed by `now`.
    fn lapse_floors(&mut self, now: u64) {
        while let Some(&(until_ms, conn, _)) = self.floor_deadlines.front() {
            if until_ms > now {
                break;
            }
            let Some((_, _, stream)) = self.floor_deadlines.pop_front() else {
                break;
            };
            // Skip a floor replaced since (a later deadline) or already lifted.
            let current = self
                .floors
                .get(&conn)
                .and_then(|f| f.iter().find(|(k, _)| *k == stream))
                .is_some_and(|(_, f)| f.until_ms <= now);
            if current {
                self.remove_floor(conn, stream.as_deref());
            }
        }
    }

    /// Floors in force (connections whose replay went out lately, per stream).
    pub fn floors(&self) -> usize {
        self.floors.values().map(Vec::len).sum()
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
    /// The live messages held meanwhile, in arrival order: (`seq`, frame).
    pub fn into_held(self) -> Vec<(u64, Bytes)> {
        self.held
    }

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

/// Answers the resumes whose replay did not come within [`RESUME_WAIT_MS`] with `unavailable` (the
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
                crate::admit::finish_ready(shard, st, conn, degraded, now)
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
    let dropped = replay(&mut st.conns, conn, &outcome, frames, waiting.held, now);
    shard.metrics.resume_duplicates.increment(dropped);
    if let Some(epoch) = &outcome.epoch {
        let stream = Some(Arc::from(channel));
        st.history
            .resuming
            .set_floor(conn, stream, outcome.seq, epoch, now);
    }
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
    let Some(waiting) = st.history.resuming.by_conn.remove(&conn) else {
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
    if let Some(epoch) = &outcome.epoch {
        st.history
            .resuming
            .set_floor(conn, None, outcome.seq, epoch, now);
    }
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

#[cfg(test)]
mod tests;
