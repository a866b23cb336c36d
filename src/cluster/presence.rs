//! Presence in Redis: which nodes hold connections of a user, with how many, and since when.
//!
//! Each user has one hash, `presence:<user>`, with one field per holding node: `"<count>:<ts_ms>"`, the
//! node's connection count for the user and the wall-clock time (ms) of the node's last write. Every write
//! goes through one Lua script (`presence.lua`) that, atomically:
//!
//! - **fences**: a write older than the writer's stored timestamp is rejected ([`Fence::Stale`]), so a
//!   late write from a dying node, or one delayed across a reconnect, cannot override a newer one;
//! - **prunes** every field older than Redis `TIME` − TTL, so a crashed node's entry vanishes after the
//!   TTL even while other nodes keep refreshing the user (which keeps the key itself alive);
//! - deletes the writer's field for a count of 0 (the node's last connection of the user closed);
//! - `PEXPIRE`s the key by the TTL while any field remains, so a user nobody refreshes disappears whole.
//!
//! Why a timestamp per field rather than a TTL per field: Redis 7.0 has no per-field expiry (HPEXPIRE
//! came in 7.4), and the fence needs the timestamp anyway. Readers ([`PresenceStore::lookup`]) ignore
//! fields past the TTL by the same rule the script prunes them, using Redis `TIME` fetched in the same
//! round trip, so "expired" means the same thing to every node whatever its clock. The writers' clocks
//! still matter for the TTL: a node whose clock is behind Redis's by more than the TTL has every write
//! judged stale, so the TTL (90 s by default) must stay well above the cluster's clock skew.
//!
//! A node refreshes all its users periodically; [`PresenceStore::set_many`] pipelines up to [`BATCH`]
//! script calls per round trip, so a refresh cycle costs `users / 1000` round trips, not one per user.
//! The script is invoked by its SHA (EVALSHA): it is loaded once, in the same round trip as the first
//! batch, and loaded again when Redis answers NOSCRIPT (after a restart or a `SCRIPT FLUSH`); a batch that
//! failed that way is retried once, which is safe because re-applying a write with the same timestamp is
//! a no-op under the fence.
//!
//! Timestamps are given by the caller. A node must never go backwards: the bridge should stamp writes
//! with `max(previous, wall clock)`, or its own later writes would be fenced after a clock step back.

use std::collections::BTreeMap;
use std::time::Duration;

use super::conn::Conn;
use redis::{ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value};

use super::keys;

/// The script applying one presence write; see the module doc and the comments in the file.
const SCRIPT: &str = include_str!("presence.lua");

/// Most script calls (or lookups) sent in one pipelined round trip.
pub const BATCH: usize = 1000;

/// Default TTL of a presence entry: a node refreshes its users well within it; a crashed node's entries
/// outlive it by at most this much.
pub const DEFAULT_TTL: Duration = Duration::from_secs(90);

/// The outcome of one presence write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// The write is stored (or, for a count of 0, the node's field is gone).
    Applied,
    /// Rejected: the node's stored timestamp is newer than the write's, or the write is already older than
    /// the TTL. Redis is unchanged for this node (apart from pruning expired fields).
    Stale,
}

/// Formats a presence field value: `"<count>:<ts_ms>"` (the script builds the same string).
pub fn format_value(count: u32, ts_ms: u64) -> String {
    format!("{count}:{ts_ms}")
}

/// Parses a presence field value into `(count, ts_ms)`; `None` when it is malformed.
pub fn parse_value(value: &str) -> Option<(u32, u64)> {
    let (count, ts) = value.split_once(':')?;
    Some((count.parse().ok()?, ts.parse().ok()?))
}

/// One node's view of presence in Redis: writes its own fields, reads everyone's.
///
/// Owned by the task that drives Redis (the bridge); every method takes `&mut self`, so writes from one
/// store reach Redis in call order.
pub struct PresenceStore {
    /// Shared, reconnecting connection; its clones may serve other parts of the bridge.
    conn: Conn,
    /// The hash field this node writes.
    node_id: String,
    /// Entries older than this are pruned by the script and ignored by lookups.
    ttl_ms: u64,
    /// The presence script; only its SHA travels after the first load.
    script: Script,
    /// Whether Redis is believed to hold the script. False at first and after a NOSCRIPT answer; while
    /// false, the next batch carries `SCRIPT LOAD` in front of its calls.
    script_loaded: bool,
    /// Pipelined round trips sent so far (each batch, each retry), for metrics and for tests that bound
    /// the cost of a refresh cycle.
    round_trips: u64,
}

impl PresenceStore {
    /// A store writing `node_id`'s fields with `ttl` (at least 1 ms is used).
    pub fn new(conn: impl Into<Conn>, node_id: impl Into<String>, ttl: Duration) -> Self {
        PresenceStore {
            conn: conn.into(),
            node_id: node_id.into(),
            ttl_ms: (ttl.as_millis() as u64).max(1),
            script: Script::new(SCRIPT),
            script_loaded: false,
            round_trips: 0,
        }
    }

    /// The node whose fields this store writes.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The TTL of an entry.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// Round trips to Redis made so far (pipelines, including retries after NOSCRIPT).
    pub fn round_trips(&self) -> u64 {
        self.round_trips
    }

    /// Sets this node's connection count for `user` (0 removes this node's field) at `ts_ms`.
    pub async fn set(&mut self, user: &str, count: u32, ts_ms: u64) -> RedisResult<Fence> {
        let fences = self.apply_batch(&[(user, count)], ts_ms).await?;
        Ok(fences[0])
    }

    /// Sets this node's count for many users at one timestamp (the periodic refresh), in one round trip per
    /// [`BATCH`] users. The result is in the order of `entries`. On an error, earlier batches may already
    /// be applied; re-sending the whole call is safe.
    pub async fn set_many<U: AsRef<str>>(
        &mut self,
        entries: &[(U, u32)],
        ts_ms: u64,
    ) -> RedisResult<Vec<Fence>> {
        let mut out = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(BATCH) {
            let batch: Vec<(&str, u32)> = chunk.iter().map(|(u, c)| (u.as_ref(), *c)).collect();
            out.extend(self.apply_batch(&batch, ts_ms).await?);
        }
        Ok(out)
    }

    /// Graceful shutdown: removes this node's field for each of `users`, pipelined like
    /// [`set_many`](Self::set_many). Fenced like any write, so a newer entry written under the same node id
    /// (a restarted process) is left alone.
    pub async fn remove_node<U: AsRef<str>>(
        &mut self,
        users: &[U],
        ts_ms: u64,
    ) -> RedisResult<Vec<Fence>> {
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(BATCH) {
            let batch: Vec<(&str, u32)> = chunk.iter().map(|u| (u.as_ref(), 0)).collect();
            out.extend(self.apply_batch(&batch, ts_ms).await?);
        }
        Ok(out)
    }

    /// The nodes holding `user` with their connection counts, sorted by node id; fields older than the
    /// TTL are ignored.
    pub async fn lookup(&mut self, user: &str) -> RedisResult<Vec<(String, u32)>> {
        let mut all = self.lookup_batch(&[user]).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`lookup`](Self::lookup) for many users, in their order, one round trip per [`BATCH`] users.
    pub async fn lookup_many<U: AsRef<str>>(
        &mut self,
        users: &[U],
    ) -> RedisResult<Vec<Vec<(String, u32)>>> {
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|u| u.as_ref()).collect();
            out.extend(self.lookup_batch(&batch).await?);
        }
        Ok(out)
    }

    /// One pipelined round trip of script calls (two when Redis answers NOSCRIPT).
    async fn apply_batch(&mut self, batch: &[(&str, u32)], ts_ms: u64) -> RedisResult<Vec<Fence>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.send_batch(batch, ts_ms).await;
        let replies = match first {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script_loaded = false;
                self.send_batch(batch, ts_ms).await?
            }
            other => other?,
        };
        if replies.len() != batch.len() {
            return Err(unexpected(format!(
                "{} replies to {} presence writes",
                replies.len(),
                batch.len()
            )));
        }
        replies
            .into_iter()
            .map(|r| match r {
                1 => Ok(Fence::Applied),
                0 => Ok(Fence::Stale),
                other => Err(unexpected(format!("presence script returned {other}"))),
            })
            .collect()
    }

    async fn send_batch(&mut self, batch: &[(&str, u32)], ts_ms: u64) -> RedisResult<Vec<i64>> {
        let mut pipe = redis::pipe();
        let loading = !self.script_loaded;
        if loading {
            pipe.load_script(&self.script).ignore();
        }
        for (user, count) in batch {
            let mut call = self.script.key(keys::presence(user));
            call.arg(&self.node_id)
                .arg(*count)
                .arg(ts_ms)
                .arg(self.ttl_ms);
            pipe.invoke_script(&call);
        }
        self.round_trips += 1;
        let replies = pipe.query_async(&mut self.conn).await?;
        if loading {
            self.script_loaded = true;
        }
        Ok(replies)
    }

    /// `TIME` followed by one `HGETALL` per user, in one round trip.
    async fn lookup_batch(&mut self, users: &[&str]) -> RedisResult<Vec<Vec<(String, u32)>>> {
        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        for user in users {
            pipe.cmd("HGETALL").arg(keys::presence(user));
        }
        self.round_trips += 1;
        let mut replies: Vec<Value> = pipe.query_async(&mut self.conn).await?;
        if replies.len() != users.len() + 1 {
            return Err(unexpected(format!(
                "{} replies to TIME and {} HGETALL",
                replies.len(),
                users.len()
            )));
        }
        let hashes = replies.split_off(1);
        let (secs, micros): (u64, u64) = redis::from_redis_value(replies.remove(0))?;
        let cutoff = (secs * 1000 + micros / 1000).saturating_sub(self.ttl_ms);
        hashes
            .into_iter()
            .map(|v| {
                let fields: BTreeMap<String, String> = redis::from_redis_value(v)?;
                Ok(live_fields(fields, cutoff))
            })
            .collect()
    }
}

/// The `(node, count)` pairs of a presence hash whose timestamp is not older than `cutoff` (the script's
/// pruning rule), in the order given; malformed values and zero counts are skipped.
pub fn live_fields(
    fields: impl IntoIterator<Item = (String, String)>,
    cutoff_ms: u64,
) -> Vec<(String, u32)> {
    fields
        .into_iter()
        .filter_map(|(node, value)| match parse_value(&value) {
            Some((count, ts)) if count > 0 && ts >= cutoff_ms => Some((node, count)),
            _ => None,
        })
        .collect()
}

fn unexpected(detail: String) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected presence reply",
        detail,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips() {
        assert_eq!(format_value(3, 1_700_000_000_123), "3:1700000000123");
        assert_eq!(parse_value("3:1700000000123"), Some((3, 1_700_000_000_123)));
        assert_eq!(
            parse_value(&format_value(u32::MAX, u64::MAX)),
            Some((u32::MAX, u64::MAX))
        );
    }

    #[test]
    fn malformed_values_are_rejected() {
        for bad in [
            "", "3", ":5", "3:", "x:5", "3:y", "-1:5", "3:-5", "3:5:7", " 3:5",
        ] {
            assert_eq!(parse_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn live_fields_apply_the_cutoff_and_skip_garbage() {
        let fields = vec![
            ("b".to_string(), "2:1000".to_string()),
            ("a".to_string(), "1:999".to_string()),
            ("c".to_string(), "0:5000".to_string()),
            ("d".to_string(), "junk".to_string()),
            ("e".to_string(), "4:1001".to_string()),
        ];
        // A field exactly at the cutoff is live, as in the script (`ts < cutoff` prunes).
        assert_eq!(
            live_fields(fields, 1000),
            vec![("b".to_string(), 2), ("e".to_string(), 4)]
        );
    }
}
