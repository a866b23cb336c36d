//! Message history and resume: every direct message a user receives carries a per-user `seq` and the
//! stream's `epoch`, and a bounded history lets a client that reconnects get what it missed. Channels
//! matching `history.channels` ([`patterns`]) have streams of their own under the same rules; their
//! publications carry the channel stream's `seq`, and `subscribe` with `since` resumes them.
//!
//! A user's stream is identified by its epoch (a random id chosen when the stream is created) and
//! numbered by `seq` from 1. The stream is kept where the user's messages are serialised: the user's
//! owner shard on a single node ([`ring`]), a Redis stream written by one Lua script in cluster mode
//! (the `gateway` crate's `cluster::history`). Both keep at most `max_messages` entries, none older than
//! `max_age`; the epoch and last `seq` outlive the entries by [`META_TTL`], so a client idle for longer
//! than `max_age` that missed nothing is still told `resumed:true`.
//!
//! Resuming ([`Position`] in, [`Outcome`] out) never leaves a silent gap: either every message after
//! the client's position is replayed (`resumed:true`), or the answer says why not (`too_old`,
//! `epoch_changed`, `unavailable`, `invalid_position`) and replays what is still kept. On the
//! connection's shard ([`resume`]) live messages that arrive while the replay is being fetched wait,
//! and go out after it without the ones the replay already carried, so the client sees every `seq` in
//! order, once.

pub mod patterns;
pub mod resume;
pub mod resuming;
pub mod ring;

use std::{sync::Arc, time::Duration};

use bytes::{BufMut, Bytes};

use crate::ws::encode::FrameBuilder;

/// The history state of a shard (embedded mode keeps the streams here; cluster mode in Redis).
pub struct History {
    /// Streams of the users this shard owns.
    pub users: ring::Streams,
    /// Streams of the channels with history this shard owns.
    pub channels: ring::Streams,
    /// Connections of this shard waiting for their resume replay.
    pub resuming: resuming::Resuming,
}

impl History {
    /// Empty streams under `config`.
    pub fn new(config: HistoryConfig) -> History {
        History {
            users: ring::Streams::new(config),
            channels: ring::Streams::new(config),
            resuming: Default::default(),
        }
    }
}

/// How long a stream's epoch and last `seq` are remembered after its last message (its entries go
/// after `max_age`).
pub const META_TTL: Duration = Duration::from_secs(24 * 3600);

/// History limits, per user stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Entries kept per stream; 0 disables history (messages carry no `seq`, offline sends are not kept).
    pub max_messages: usize,
    /// Entries older than this are dropped.
    pub max_age: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_messages: 500,
            max_age: Duration::from_secs(300),
        }
    }
}

impl HistoryConfig {
    /// True when messages are numbered and kept.
    pub fn enabled(&self) -> bool {
        self.max_messages > 0
    }
}

/// Where a client stands in a stream: the last `seq` it received, in `epoch` (`None` with `seq` 0:
/// it has received nothing yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The stream's epoch as the client last saw it.
    pub epoch: Option<Arc<str>>,
    /// The last `seq` the client received.
    pub seq: u64,
}

/// A connection's request to resume its user's stream, carried to the user's owner shard (and in
/// cluster mode on to the bridge); answered with [`crate::messages::HistoryMsg::UserResumed`].
#[derive(Clone, Debug)]
pub struct ResumeRequest {
    /// The shard holding the connection.
    pub shard: usize,
    /// The resuming connection.
    pub conn: crate::ids::ConnId,
    /// Where the client stands.
    pub from: Position,
}

/// Why a resume could not fill the gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    /// Messages after the position were dropped (over `max_messages` or older than `max_age`).
    TooOld,
    /// The stream was reset (history lost: a Redis restart or flush, or the stream forgotten).
    EpochChanged,
    /// The history could not be read (Redis unreachable).
    Unavailable,
    /// The position is past the stream's end: the client's state is not from this stream.
    InvalidPosition,
    /// The channel keeps no history (`history.channels` does not match it).
    NoHistory,
}

impl Gap {
    /// The `reason` field of `ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            Gap::TooOld => "too_old",
            Gap::EpochChanged => "epoch_changed",
            Gap::Unavailable => "unavailable",
            Gap::InvalidPosition => "invalid_position",
            Gap::NoHistory => "no_history",
        }
    }
}

/// The answer to a resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `None`: every missed message is replayed; otherwise why not.
    pub gap: Option<Gap>,
    /// The stream's epoch (`None` when the history could not be read).
    pub epoch: Option<Arc<str>>,
    /// The stream's last `seq`: the client's position once it has read the replay.
    pub seq: u64,
    /// Messages replayed.
    pub replayed: u64,
}

impl Outcome {
    /// The outcome when the history cannot be read.
    pub fn unavailable() -> Self {
        Self::not_kept(Gap::Unavailable)
    }

    /// The outcome when there is no stream to read, for `why`.
    pub fn not_kept(why: Gap) -> Self {
        Outcome {
            gap: Some(why),
            epoch: None,
            seq: 0,
            replayed: 0,
        }
    }

    /// Decides the outcome of resuming `from` in a stream `epoch` whose last entry is `last`, given the
    /// first kept `seq` after the client's position (`first_kept`, `last + 1` when nothing is kept past
    /// it) and how many entries will be replayed.
    pub fn decide(
        from: &Position,
        epoch: &Arc<str>,
        last: u64,
        first_kept: u64,
        replayed: u64,
    ) -> Self {
        let same_epoch = match &from.epoch {
            Some(e) => e == epoch,
            None => from.seq == 0,
        };
        let gap = if !same_epoch {
            // A client that never saw an epoch and asks from 0 is in every stream; any other epoch is
            // a stream it no longer knows.
            Some(Gap::EpochChanged)
        } else if from.seq > last {
            Some(Gap::InvalidPosition)
        } else if first_kept > from.seq + 1 {
            Some(Gap::TooOld)
        } else {
            None
        };
        Outcome {
            gap,
            epoch: Some(epoch.clone()),
            seq: last,
            replayed,
        }
    }
}

/// A fresh epoch: 16 hex digits from the clock, the pid and a counter, mixed.
pub fn new_epoch() -> Arc<str> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos
        ^ ((std::process::id() as u64) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finaliser: neighbouring inputs give unrelated outputs.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    Arc::from(format!("{x:016x}"))
}

/// The payload of a server text frame built by [`FrameBuilder`] (unmasked, final, one frame).
fn payload(frame: &[u8]) -> &[u8] {
    let Some(&len7) = frame.get(1) else {
        return &[];
    };
    let head = match len7 & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    frame.get(head..).unwrap_or(&[])
}

/// Prefix of every message frame's payload (see `protocol::encode`).
const MESSAGE_PREFIX: &[u8] = b"{\"op\":\"message\"";

/// `frame` (a `message` frame) with `"seq":N,"epoch":"E"` inserted after its `op`, as delivered and
/// replayed. A frame of another shape is returned unchanged.
pub fn sequenced(frame: &Bytes, seq: u64, epoch: &str) -> Bytes {
    let body = payload(frame);
    let Some(rest) = body.strip_prefix(MESSAGE_PREFIX) else {
        return frame.clone();
    };
    let mut b = FrameBuilder::with_capacity(body.len() + epoch.len() + 40);
    let p = b.payload();
    p.extend_from_slice(MESSAGE_PREFIX);
    p.extend_from_slice(b",\"seq\":");
    p.extend_from_slice(seq.to_string().as_bytes());
    p.extend_from_slice(b",\"epoch\":\"");
    // Epochs are hex digits: nothing to escape.
    p.extend_from_slice(epoch.as_bytes());
    p.put_u8(b'"');
    p.extend_from_slice(rest);
    b.finish_text()
}

/// The `seq` of a numbered message frame (as [`sequenced`] writes it); 0 for any other frame.
pub fn frame_seq(frame: &[u8]) -> u64 {
    let Some(rest) = payload(frame)
        .strip_prefix(MESSAGE_PREFIX)
        .and_then(|r| r.strip_prefix(b",\"seq\":"))
    else {
        return 0;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).take(20);
    digits.fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;

    fn text(frame: &Bytes) -> String {
        String::from_utf8(payload(frame).to_vec()).unwrap()
    }

    #[test]
    fn sequenced_inserts_seq_and_epoch_after_op() {
        let mut raw = br#"{"x":1}"#.to_vec();
        let data = simd_json::to_borrowed_value(&mut raw).unwrap();
        let frame = encode::direct_message("alice", &data);
        let out = sequenced(&frame, 42, "00ff");
        assert_eq!(
            text(&out),
            r#"{"op":"message","seq":42,"epoch":"00ff","from":"alice","data":{"x":1}}"#
        );
        // Long payloads (16-bit and 64-bit lengths) keep their body intact.
        let big = "y".repeat(70_000);
        let mut raw = format!("\"{big}\"").into_bytes();
        let data = simd_json::to_borrowed_value(&mut raw).unwrap();
        let frame = encode::direct_message("bob", &data);
        let out = sequenced(&frame, 7, "ab");
        assert!(text(&out).ends_with(&format!("\"data\":\"{big}\"}}")));
        assert!(text(&out).starts_with(r#"{"op":"message","seq":7,"epoch":"ab","from":"bob""#));
    }

    #[test]
    fn other_frames_are_left_alone() {
        let frame = encode::pong(Some("x"));
        assert_eq!(sequenced(&frame, 1, "e"), frame);
        assert_eq!(frame_seq(&frame), 0);
    }

    #[test]
    fn frame_seq_reads_back_what_sequenced_wrote() {
        let frame = encode::backend_message(Some("c"), "1");
        assert_eq!(frame_seq(&frame), 0);
        assert_eq!(frame_seq(&sequenced(&frame, 1234567, "ab")), 1234567);
    }

    #[test]
    fn outcomes() {
        let e: Arc<str> = Arc::from("e1");
        let at = |epoch: Option<&str>, seq| Position {
            epoch: epoch.map(Arc::from),
            seq,
        };
        // Everything after 5 is kept: resumed.
        let o = Outcome::decide(&at(Some("e1"), 5), &e, 9, 6, 4);
        assert_eq!((o.gap, o.seq, o.replayed), (None, 9, 4));
        // Up to date.
        assert_eq!(Outcome::decide(&at(Some("e1"), 9), &e, 9, 10, 0).gap, None);
        // Seq 6 is gone.
        assert_eq!(
            Outcome::decide(&at(Some("e1"), 5), &e, 9, 7, 3).gap,
            Some(Gap::TooOld)
        );
        // Another epoch.
        assert_eq!(
            Outcome::decide(&at(Some("e0"), 5), &e, 9, 1, 9).gap,
            Some(Gap::EpochChanged)
        );
        // Past the end.
        assert_eq!(
            Outcome::decide(&at(Some("e1"), 12), &e, 9, 10, 0).gap,
            Some(Gap::InvalidPosition)
        );
        // A client that has seen nothing, with everything kept from seq 1.
        assert_eq!(Outcome::decide(&at(None, 0), &e, 3, 1, 3).gap, None);
        assert_eq!(
            Outcome::decide(&at(None, 0), &e, 3, 2, 2).gap,
            Some(Gap::TooOld)
        );
    }

    #[test]
    fn epochs_differ() {
        let a = new_epoch();
        let b = new_epoch();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
