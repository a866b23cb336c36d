//! The connections of a shard waiting for a replay, what they hold meanwhile, and the floors their
//! finished replays leave: the state of a resume, kept by the shard's history. The steps of a resume
//! (why it waits, what it drops) are told in [`super::resume`], which drives this state.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use bytes::Bytes;

use crate::ids::ConnId;

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
    pub(super) fn waits_ready(&self, conn: ConnId) -> bool {
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
    pub(super) fn channel_mut(&mut self, conn: ConnId, channel: &str) -> Option<&mut Waiting> {
        if self.by_sub.is_empty() {
            return None;
        }
        let subs = self.by_sub.get_mut(&conn)?;
        subs.iter_mut()
            .find(|(c, _)| &**c == channel)
            .map(|(_, w)| w)
    }

    /// `conn`'s wait for its user's replay, ended.
    pub(super) fn take_user(&mut self, conn: ConnId) -> Option<Waiting> {
        self.by_conn.remove(&conn)
    }

    /// Takes the waiting entry of `conn` for `channel`.
    pub(super) fn take_channel(&mut self, conn: ConnId, channel: &str) -> Option<Waiting> {
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
    pub(super) fn set_floor(
        &mut self,
        conn: ConnId,
        stream: StreamKey,
        seq: u64,
        epoch: &str,
        now: u64,
    ) {
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
    pub(super) fn below_floor(
        &mut self,
        conn: ConnId,
        stream: Option<&str>,
        seq: u64,
        frame: &[u8],
    ) -> bool {
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
    pub(super) fn lapse_floors(&mut self, now: u64) {
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
    pub(super) fn hold(&mut self, seq: u64, frame: Bytes, bound: usize) -> bool {
        if self.bytes + frame.len() > bound {
            return false;
        }
        self.bytes += frame.len();
        self.held.push((seq, frame));
        true
    }
}

/// True when a numbered message frame belongs to stream `epoch` (its `"epoch"` comes right after the
/// `seq`, within the first bytes).
pub(super) fn carries_epoch(frame: &[u8], epoch: &str) -> bool {
    let head = &frame[..frame.len().min(80)];
    let needle = format!("\"epoch\":\"{epoch}\"");
    head.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[cfg(test)]
mod tests;
