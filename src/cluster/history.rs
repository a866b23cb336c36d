//! Per-user message history in Redis: the cluster-wide form of `shards::history`.
//!
//! A user's messages may be sent from any node and received on any node, and a channel's published
//! from any node, so numbering them needs one place every node agrees on: Redis. Each message goes
//! through one Lua script (`append.lua`) that, atomically, takes the next `seq` of the stream
//! (creating it with a new epoch when there is none), appends the frame to a Redis stream trimmed to
//! `max_messages` entries (`MAXLEN`) and to `max_age` (`MINID` on the time-based entry ids), and
//! publishes it: on the channel's topic, or on the node channel of every node holding the user (read
//! from the user's presence hash in the same script). Numbering and publishing in one step is what
//! makes every node receive a stream's messages in `seq` order, whichever nodes sent them; and the
//! same round trip numbers, keeps and routes the message, so history costs no extra round trip. A
//! resume reads the stream with `history_read.lua`.
//!
//! The metadata (epoch, last seq) lives [`META_TTL`] after the last message and the entries `max_age`,
//! as in the embedded ring. When Redis loses the keys (a restart without persistence, a flush, an
//! eviction) the next message starts a new epoch, and a client resuming from the old one is told
//! `epoch_changed`: loss is reported, never silent.
//!
//! Scripts travel by SHA; a batch answered NOSCRIPT is sent again with `SCRIPT LOAD` in front (both
//! scripts are safe to run twice only in the sense that matters: a retried append is a new message,
//! so the retry happens only for NOSCRIPT, which Redis answers without running anything).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use redis::{ErrorKind, RedisResult, Script, ServerErrorKind, Value};

use super::conn::Conn;
use shards::history::{HistoryConfig, META_TTL, Outcome, Position, new_epoch, sequenced};

use super::keys;

/// Both scripts start with `stream_open.lua`.
const APPEND: &str = concat!(include_str!("stream_open.lua"), include_str!("append.lua"));
const READ: &str = concat!(
    include_str!("stream_open.lua"),
    include_str!("history_read.lua")
);

/// Whose stream: a user's or a channel's (same layout, different keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOf {
    /// A user's direct messages.
    User,
    /// A channel's publications.
    Channel,
}

impl StreamOf {
    /// The stream's (metadata key, stream key).
    fn keys(self, name: &str) -> (String, String) {
        match self {
            StreamOf::User => (keys::history_meta(name), keys::history_stream(name)),
            StreamOf::Channel => (
                keys::channel_history_meta(name),
                keys::channel_history_stream(name),
            ),
        }
    }
}

/// A new id for a message this process sends: increasing for the life of the process, so the append
/// script can tell a message it appended already when the client library sends it again (ids are
/// compared per [`sender`]).
pub fn message_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// This process's name as a sender of messages in the streams' records: random per process (a
/// restarted node, or one that kept its node id, starts a new sequence of ids), and not the node id,
/// which these records outlive.
pub fn sender() -> &'static str {
    static SENDER: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    SENDER.get_or_init(new_epoch)
}

/// A message numbered, kept and published by the append script.
#[derive(Debug)]
pub struct Appended {
    /// The stream's epoch.
    pub epoch: Arc<str>,
    /// The message's number.
    pub seq: u64,
    /// Nodes that received it: those listening to the channel's topic, or the nodes holding the user
    /// (this one included) that listen to their node channel.
    pub receivers: u64,
}

/// The history scripts and limits of one node.
pub struct HistoryStore {
    config: HistoryConfig,
    append: Script,
    read: Script,
    /// Whether Redis is believed to hold both scripts.
    loaded: AtomicBool,
}

impl HistoryStore {
    /// A store with these limits.
    pub fn new(config: HistoryConfig) -> Self {
        HistoryStore {
            config,
            append: Script::new(APPEND),
            read: Script::new(READ),
            loaded: AtomicBool::new(false),
        }
    }

    /// The limits.
    pub fn config(&self) -> HistoryConfig {
        self.config
    }

    /// Puts `SCRIPT LOAD` of every script in front of `pipe` when Redis may not hold them.
    pub fn prepare(&self, pipe: &mut redis::Pipeline) {
        if !self.loaded.load(Ordering::Acquire) {
            pipe.load_script(&self.append).ignore();
            pipe.load_script(&self.read).ignore();
        }
    }

    /// Records the outcome of a pipeline that [`prepare`](Self::prepare)d: loaded after success,
    /// not loaded after NOSCRIPT. Returns true when the pipeline should be sent again.
    pub fn after(&self, result: &RedisResult<impl Sized>) -> bool {
        match result {
            Ok(_) => {
                self.loaded.store(true, Ordering::Release);
                false
            }
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.loaded.store(false, Ordering::Release);
                true
            }
            Err(_) => false,
        }
    }

    /// Adds the append of `frame` to `user`'s stream to `pipe`, publishing it with `PUBLISH` on the
    /// node channel of every node holding `user` (its presence field younger than `presence_ttl`) as
    /// `head` followed by `<seq>\n<epoch>\n<frame>` (one reply, see [`parse_append`](Self::parse_append)).
    /// `me` is this node, published to also when `here` (it holds `user`, whatever Redis presence
    /// says yet).
    pub fn append(
        &self,
        pipe: &mut redis::Pipeline,
        user: &str,
        frame: &[u8],
        (head, presence_ttl, me, here): (&[u8], std::time::Duration, &str, bool),
        id: u64,
    ) {
        let (meta, stream) = StreamOf::User.keys(user);
        let mut call = self.append.key(meta);
        call.key(stream).key(keys::presence(user));
        let (prefix, suffix) = keys::node_channel_affixes();
        self.args(&mut call, frame, head)
            .arg("PUBLISH")
            .arg(prefix)
            .arg(presence_ttl.as_millis() as u64)
            .arg(me)
            .arg(if here { "1" } else { "0" })
            .arg(suffix)
            .arg(if keys::hash_tags() { "1" } else { "0" })
            .arg(sender())
            .arg(id);
        pipe.invoke_script(&call);
    }

    /// Adds the append of `frame` to `channel`'s stream to `pipe`, publishing it on `topic` with
    /// `publish` (`PUBLISH` or `SPUBLISH`) as `head` followed by `<seq>\n<epoch>\n<frame>` (one
    /// reply, see [`parse_append`](Self::parse_append)).
    pub fn append_channel(
        &self,
        pipe: &mut redis::Pipeline,
        channel: &str,
        frame: &[u8],
        (publish, topic, head): (&str, &str, &[u8]),
        id: u64,
    ) {
        let (meta, stream) = StreamOf::Channel.keys(channel);
        let mut call = self.append.key(meta);
        call.key(stream);
        self.args(&mut call, frame, head)
            .arg(publish)
            .arg(topic)
            .arg(sender())
            .arg(id);
        pipe.invoke_script(&call);
    }

    /// The arguments both appends start with.
    fn args<'a, 's>(
        &self,
        call: &'a mut redis::ScriptInvocation<'s>,
        frame: &[u8],
        head: &[u8],
    ) -> &'a mut redis::ScriptInvocation<'s> {
        call.arg(frame)
            .arg(self.config.max_messages)
            .arg(self.age_ms())
            .arg(&*new_epoch())
            .arg(META_TTL.as_millis() as u64)
            .arg(head)
    }

    /// Reads the append script's reply.
    pub fn parse_append(value: Value) -> RedisResult<Appended> {
        let mut parts: Vec<Value> = redis::from_redis_value(value)?;
        // A fourth element: the message had been appended already (a pipeline sent again).
        if parts.len() == 4 {
            parts.pop();
            metrics::counter!("gateway_cluster_appends_repeated_total").increment(1);
        }
        let (epoch, seq, receivers): (String, u64, u64) =
            redis::from_redis_value(Value::Array(parts))?;
        Ok(Appended {
            epoch: Arc::from(epoch),
            seq,
            receivers,
        })
    }

    /// Resumes each (user or channel, position): the outcome and the frames to replay, in order. One
    /// round trip (two after NOSCRIPT).
    pub async fn resume_many(
        &self,
        conn: &mut Conn,
        reqs: &[(StreamOf, Arc<str>, Position)],
    ) -> RedisResult<Vec<(Outcome, Vec<Bytes>)>> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut replies: RedisResult<Vec<Value>> =
            Err(redis::RedisError::from((ErrorKind::Client, "not sent")));
        for _ in 0..2 {
            let mut pipe = redis::pipe();
            self.prepare(&mut pipe);
            for (of, name, from) in reqs {
                let (meta, stream) = of.keys(name);
                let mut call = self.read.key(meta);
                call.key(stream)
                    .arg(from.epoch.as_deref().unwrap_or(""))
                    .arg(from.seq)
                    .arg(self.age_ms())
                    .arg(&*new_epoch())
                    .arg(META_TTL.as_millis() as u64)
                    .arg(self.config.max_messages);
                pipe.invoke_script(&call);
            }
            replies = pipe.query_async(conn).await;
            if !self.after(&replies) {
                break;
            }
        }
        replies?
            .into_iter()
            .zip(reqs)
            .map(|(v, (_, _, from))| decode_read(v, from))
            .collect()
    }

    fn age_ms(&self) -> u64 {
        (self.config.max_age.as_millis() as u64).max(1)
    }
}

/// One read script reply: the outcome for `from`, and the frames (numbered) oldest first.
fn decode_read(value: Value, from: &Position) -> RedisResult<(Outcome, Vec<Bytes>)> {
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let (epoch, last, entries): (String, u64, Vec<Entry>) = redis::from_redis_value(value)?;
    let epoch: Arc<str> = Arc::from(epoch);
    let mut numbered: Vec<(u64, Vec<u8>)> = entries
        .into_iter()
        .filter_map(|(_, fields)| {
            let mut seq = None;
            let mut frame = None;
            for (k, v) in fields {
                match k.as_str() {
                    "s" => seq = std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()),
                    "f" => frame = Some(v),
                    _ => {}
                }
            }
            Some((seq?, frame?))
        })
        .collect();
    numbered.sort_unstable_by_key(|(seq, _)| *seq);
    let first_kept = numbered.first().map_or(last + 1, |(seq, _)| *seq);
    let frames: Vec<Bytes> = numbered
        .into_iter()
        .map(|(seq, raw)| sequenced(&Bytes::from(raw), seq, &epoch))
        .collect();
    let outcome = Outcome::decide(from, &epoch, last, first_kept, frames.len() as u64);
    Ok((outcome, frames))
}
