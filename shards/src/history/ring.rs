//! The embedded history: each user's stream as a ring of frames in its owner shard's memory.
//!
//! The owner shard is where a user's direct messages are serialised (every send to the user passes
//! through it), so numbering there needs no coordination. Memory is bounded per stream by
//! `max_messages` and `max_age`; a stream with no message for `max_age` drops its entries, and one with
//! none for [`META_TTL`] is forgotten. Expiry is driven by a heap holding at most one deadline per
//! stream, visited from the shard's tick, so no pass over every stream ever happens.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    sync::Arc,
};

use bytes::Bytes;

use super::{HistoryConfig, META_TTL, Outcome, Position, new_epoch, sequenced};

/// One kept message.
#[derive(Debug)]
struct Entry {
    seq: u64,
    at_ms: u64,
    /// The frame as delivered (with `seq` and `epoch`).
    frame: Bytes,
}

/// One user's stream.
#[derive(Debug)]
struct Stream {
    epoch: Arc<str>,
    last_seq: u64,
    last_ms: u64,
    entries: VecDeque<Entry>,
    /// Payload bytes held by `entries`.
    bytes: usize,
}

/// The streams of the users a shard owns.
#[derive(Debug, Default)]
pub struct Streams {
    config: HistoryConfig,
    by_user: HashMap<Arc<str>, Stream>,
    /// (deadline ms, user): when to look at a stream again; at most one per stream.
    expiry: BinaryHeap<Reverse<(u64, Arc<str>)>>,
    /// Frames held by every stream, for the gauge.
    bytes: usize,
}

impl Streams {
    /// An empty store with these limits.
    pub fn new(config: HistoryConfig) -> Self {
        Streams {
            config,
            ..Default::default()
        }
    }

    /// Numbers `frame` for `user`, keeps it, and returns it as delivered with its `seq`.
    pub fn append(&mut self, user: &Arc<str>, frame: &Bytes, now_ms: u64) -> (Bytes, u64) {
        let max_age = self.config.max_age.as_millis() as u64;
        let max_messages = self.config.max_messages;
        let stream = self.stream(user, now_ms);
        stream.last_seq += 1;
        stream.last_ms = now_ms;
        let seq = stream.last_seq;
        let frame = sequenced(frame, seq, &stream.epoch);
        stream.bytes += frame.len();
        let mut freed = 0;
        stream.entries.push_back(Entry {
            seq,
            at_ms: now_ms,
            frame: frame.clone(),
        });
        while stream.entries.len() > max_messages {
            if let Some(old) = stream.entries.pop_front() {
                freed += old.frame.len();
            }
        }
        freed += trim_older(stream, now_ms.saturating_sub(max_age));
        stream.bytes -= freed;
        self.bytes = self.bytes + frame.len() - freed;
        (frame, seq)
    }

    /// Resumes `from` in `user`'s stream: the outcome and the frames to replay, in order.
    pub fn resume(
        &mut self,
        user: &Arc<str>,
        from: &Position,
        now_ms: u64,
    ) -> (Outcome, Vec<Bytes>) {
        let max_age = self.config.max_age.as_millis() as u64;
        let stream = self.stream(user, now_ms);
        let freed = trim_older(stream, now_ms.saturating_sub(max_age));
        stream.bytes -= freed;
        let same_epoch = from.epoch.as_deref() == Some(&*stream.epoch);
        // From a known position, only what follows it; from another epoch (or none), all that is kept.
        let after = if same_epoch { from.seq } else { 0 };
        let frames: Vec<Bytes> = stream
            .entries
            .iter()
            .filter(|e| e.seq > after)
            .map(|e| e.frame.clone())
            .collect();
        let first_kept = stream
            .entries
            .iter()
            .find(|e| e.seq > after)
            .map_or(stream.last_seq + 1, |e| e.seq);
        let epoch = stream.epoch.clone();
        let last = stream.last_seq;
        self.bytes -= freed;
        let outcome = Outcome::decide(from, &epoch, last, first_kept, frames.len() as u64);
        (outcome, frames)
    }

    /// Drops expired entries and forgotten streams whose deadline has come.
    pub fn expire(&mut self, now_ms: u64) {
        let max_age = self.config.max_age.as_millis() as u64;
        let meta_ttl = META_TTL.as_millis() as u64;
        while let Some(Reverse((at, _))) = self.expiry.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((_, user))) = self.expiry.pop() else {
                break;
            };
            let Some(stream) = self.by_user.get_mut(&user) else {
                continue;
            };
            let freed = trim_older(stream, now_ms.saturating_sub(max_age));
            stream.bytes -= freed;
            self.bytes -= freed;
            let next = if !stream.entries.is_empty() {
                stream.entries.front().map_or(now_ms, |e| e.at_ms + max_age)
            } else if stream.last_ms + meta_ttl > now_ms {
                stream.last_ms + meta_ttl
            } else {
                self.by_user.remove(&user);
                continue;
            };
            self.expiry.push(Reverse((next.max(now_ms + 1), user)));
        }
    }

    /// Streams held.
    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    /// True when no stream is held.
    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    /// Frame bytes held by every stream.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// `user`'s stream, created (with a new epoch, and a deadline) if it has none.
    fn stream(&mut self, user: &Arc<str>, now_ms: u64) -> &mut Stream {
        let max_age = self.config.max_age.as_millis() as u64;
        let expiry = &mut self.expiry;
        self.by_user.entry(user.clone()).or_insert_with(|| {
            expiry.push(Reverse((now_ms + max_age.max(1), user.clone())));
            Stream {
                epoch: new_epoch(),
                last_seq: 0,
                last_ms: now_ms,
                entries: VecDeque::new(),
                bytes: 0,
            }
        })
    }
}

/// Drops `stream`'s entries older than `cutoff_ms`; returns the bytes freed.
fn trim_older(stream: &mut Stream, cutoff_ms: u64) -> usize {
    let mut freed = 0;
    while stream.entries.front().is_some_and(|e| e.at_ms < cutoff_ms) {
        if let Some(old) = stream.entries.pop_front() {
            freed += old.frame.len();
        }
    }
    freed
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{history::Gap, protocol::encode};

    fn msg(n: u64) -> Bytes {
        let mut raw = n.to_string().into_bytes();
        let data = simd_json::to_borrowed_value(&mut raw).unwrap();
        encode::direct_message("alice", &data)
    }

    fn store(max: usize, age_ms: u64) -> Streams {
        Streams::new(HistoryConfig {
            max_messages: max,
            max_age: Duration::from_millis(age_ms),
        })
    }

    #[test]
    fn numbers_in_order_and_replays_the_gap() {
        let mut s = store(10, 60_000);
        let bob: Arc<str> = Arc::from("bob");
        for i in 1..=5 {
            let (_, seq) = s.append(&bob, &msg(i), i);
            assert_eq!(seq, i);
        }
        let (first, frames) = s.resume(
            &bob,
            &Position {
                epoch: None,
                seq: 0,
            },
            10,
        );
        assert_eq!((first.gap, first.seq, frames.len()), (None, 5, 5));
        let epoch = first.epoch.clone();
        let (o, frames) = s.resume(
            &bob,
            &Position {
                epoch: epoch.clone(),
                seq: 3,
            },
            10,
        );
        assert_eq!((o.gap, o.seq, o.replayed), (None, 5, 2));
        assert_eq!(frames.len(), 2);
        let text = String::from_utf8(frames[0][2..].to_vec()).unwrap();
        assert!(text.contains("\"seq\":4"), "{text}");
        assert_eq!(s.resume(&bob, &Position { epoch, seq: 5 }, 10).1.len(), 0);
    }

    #[test]
    fn bounded_by_count_and_age() {
        let mut s = store(3, 1_000);
        let bob: Arc<str> = Arc::from("bob");
        for i in 1..=5 {
            s.append(&bob, &msg(i), 0);
        }
        let epoch = s
            .resume(
                &bob,
                &Position {
                    epoch: None,
                    seq: 0,
                },
                0,
            )
            .0
            .epoch;
        // Seqs 1 and 2 were pushed out by the count.
        let (o, frames) = s.resume(
            &bob,
            &Position {
                epoch: epoch.clone(),
                seq: 1,
            },
            0,
        );
        assert_eq!((o.gap, frames.len()), (Some(Gap::TooOld), 3));
        assert_eq!(
            s.resume(
                &bob,
                &Position {
                    epoch: epoch.clone(),
                    seq: 2
                },
                0
            )
            .0
            .gap,
            None
        );
        // Past the age every entry is gone, the position still resumes when nothing was missed.
        s.expire(2_000);
        assert_eq!(s.bytes(), 0);
        let (o, frames) = s.resume(
            &bob,
            &Position {
                epoch: epoch.clone(),
                seq: 5,
            },
            2_000,
        );
        assert_eq!((o.gap, frames.len()), (None, 0));
        assert_eq!(
            s.resume(&bob, &Position { epoch, seq: 4 }, 2_000).0.gap,
            Some(Gap::TooOld)
        );
        // After the meta TTL the stream is forgotten; the old epoch no longer resumes.
        let later = 2_000 + META_TTL.as_millis() as u64;
        s.expire(later);
        assert!(s.is_empty());
    }

    #[test]
    fn a_forgotten_stream_reports_the_epoch_change() {
        let mut s = store(3, 1_000);
        let bob: Arc<str> = Arc::from("bob");
        s.append(&bob, &msg(1), 0);
        let old = s
            .resume(
                &bob,
                &Position {
                    epoch: None,
                    seq: 0,
                },
                0,
            )
            .0
            .epoch;
        s.expire(META_TTL.as_millis() as u64 + 10);
        assert!(s.is_empty());
        s.append(&bob, &msg(2), META_TTL.as_millis() as u64 + 20);
        let (o, frames) = s.resume(
            &bob,
            &Position { epoch: old, seq: 1 },
            META_TTL.as_millis() as u64 + 30,
        );
        assert_eq!(
            (o.gap, o.seq, frames.len()),
            (Some(Gap::EpochChanged), 1, 1)
        );
    }
}
