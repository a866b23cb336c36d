//! The node registry: which gateway nodes form the cluster, where to reach them, and whether they live.
//!
//! Two things per node, written together by its heartbeat:
//!
//! - a field of the `gateway:nodes` hash: node id → JSON
//!   `{"state","ws","admin","started_ms","heartbeat_ms"}`, the node's description. It stays after the
//!   node dies, so `GET /v1/nodes` can still show a dead node (and when it was last heard of) until
//!   [`Registry::prune_dead`] removes it;
//! - the key `gateway:node:<id>:alive`, holding the state (`alive` or `draining`) with a TTL (15 s by
//!   default, refreshed every 5 s). Liveness is decided by Redis's expiry alone: while the key exists the
//!   node is alive or draining; once it expired the node is [`Liveness::Dead`], whatever the clocks say.
//!
//! A heartbeat writes both in one `MULTI`/`EXEC` round trip, so a reader never sees a description newer
//! than the alive key. A graceful shutdown removes both at once ([`Registry::remove`]); a crashed node
//! turns dead when its TTL runs out. Pruning deletes a description only if its alive key is still absent
//! and the description is still the one examined (a compare-and-delete script), so a node that comes back
//! between the check and the delete keeps its entry.

use std::collections::BTreeMap;
use std::time::Duration;

use super::conn::Conn;
use redis::{RedisResult, Script};
use serde::{Deserialize, Serialize};

use super::{keys, now_ms};

/// Default interval between two heartbeats of a node.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Default TTL of a node's alive key: three missed heartbeats make a node dead.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

/// Deletes `gateway:nodes[ARGV[1]]` if `KEYS[2]` (its alive key) does not exist and the field still holds
/// ARGV[2]; returns 1 when deleted.
const PRUNE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
";

/// The state a node announces in its heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Serving and accepting connections.
    Alive,
    /// Shutting down: still serving its connections, accepting no new ones.
    Draining,
}

impl NodeState {
    /// The name stored in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Alive => "alive",
            NodeState::Draining => "draining",
        }
    }
}

/// A node's state as another node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Heartbeating, announcing [`NodeState::Alive`].
    Alive,
    /// Heartbeating, announcing [`NodeState::Draining`].
    Draining,
    /// Its alive key expired (or was never written): no heartbeat within the TTL.
    Dead,
}

impl Liveness {
    /// `alive`, `draining` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Draining => "draining",
            Liveness::Dead => "dead",
        }
    }

    /// The liveness of a node whose alive key holds `value` (`None`: the key does not exist).
    pub fn from_alive_key(value: Option<&str>) -> Liveness {
        match value {
            None => Liveness::Dead,
            Some("draining") => Liveness::Draining,
            Some(_) => Liveness::Alive,
        }
    }
}

/// What a node tells the cluster about itself; fixed for the life of the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Address clients use for WebSocket connections (as the operator wants it shown).
    pub ws: String,
    /// Address of the admin HTTP server.
    pub admin: String,
    /// Start time of the node, wall-clock ms.
    pub started_ms: u64,
}

/// One node of the cluster as [`Registry::list`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node id (the `gateway:nodes` field).
    pub id: String,
    /// Alive or draining while its alive key exists, dead after.
    pub state: Liveness,
    /// WebSocket address from its description.
    pub ws: String,
    /// Admin address from its description.
    pub admin: String,
    /// Start time from its description (0 if unknown).
    pub started_ms: u64,
    /// Its last heartbeat, wall-clock ms of that node (0 if unknown).
    pub heartbeat_ms: u64,
    /// Open connections at its last heartbeat (0 if unknown).
    pub connections: u64,
    /// Its shard count (0 if unknown).
    pub shards: u64,
}

/// A node description as stored in `gateway:nodes`, field for field. Unknown fields are ignored and
/// missing ones default, so that nodes of different versions can share a registry.
#[derive(Serialize, Deserialize)]
struct Description {
    #[serde(default)]
    state: String,
    #[serde(default)]
    ws: String,
    #[serde(default)]
    admin: String,
    #[serde(default)]
    started_ms: u64,
    #[serde(default)]
    heartbeat_ms: u64,
    #[serde(default)]
    connections: u64,
    #[serde(default)]
    shards: u64,
}

/// What a heartbeat reports of the node's load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Open connections.
    pub connections: u64,
    /// Shards (cores) serving them.
    pub shards: u64,
}

/// Encodes a node description as stored in `gateway:nodes`.
pub fn encode_description(
    state: NodeState,
    info: &NodeInfo,
    heartbeat_ms: u64,
    stats: NodeStats,
) -> String {
    let description = Description {
        state: state.as_str().to_string(),
        ws: info.ws.clone(),
        admin: info.admin.clone(),
        started_ms: info.started_ms,
        heartbeat_ms,
        connections: stats.connections,
        shards: stats.shards,
    };
    serde_json::to_string(&description).expect("strings and integers always serialize")
}

/// Decodes a description into a view with the given liveness; `None` when it is not a JSON object of
/// the expected field types. Missing fields read as empty or 0, unknown fields are ignored.
pub fn decode_description(id: &str, json_text: &str, state: Liveness) -> Option<NodeView> {
    let d: Description = serde_json::from_str(json_text).ok()?;
    Some(NodeView {
        id: id.to_string(),
        state,
        ws: d.ws,
        admin: d.admin,
        started_ms: d.started_ms,
        heartbeat_ms: d.heartbeat_ms,
        connections: d.connections,
        shards: d.shards,
    })
}

/// This node's entry in the registry, and a reader of everyone's.
pub struct Registry {
    /// Shared, reconnecting connection.
    conn: Conn,
    /// This node's id: its `gateway:nodes` field.
    node_id: String,
    /// What the heartbeat publishes.
    info: NodeInfo,
    /// TTL of the alive key, set again by every heartbeat.
    ttl: Duration,
    /// The compare-and-delete script of [`prune_dead`](Self::prune_dead).
    prune_script: Script,
    /// Reads the load figures each heartbeat reports (none: zeros).
    stats: Option<std::sync::Arc<dyn Fn() -> NodeStats + Send + Sync>>,
}

impl Registry {
    /// A registry entry for `node_id` whose alive key lives `ttl` after each heartbeat (at least 1 ms).
    pub fn new(
        conn: impl Into<Conn>,
        node_id: impl Into<String>,
        info: NodeInfo,
        ttl: Duration,
    ) -> Self {
        Registry {
            conn: conn.into(),
            node_id: node_id.into(),
            info,
            ttl: ttl.max(Duration::from_millis(1)),
            prune_script: Script::new(PRUNE_SCRIPT),
            stats: None,
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Makes every heartbeat report `stats()` (connections and shards, shown by `GET /v1/nodes` and the
    /// dashboard).
    pub fn with_stats(
        mut self,
        stats: std::sync::Arc<dyn Fn() -> NodeStats + Send + Sync>,
    ) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Announces this node in `state` and renews its alive key: one `MULTI`/`EXEC` round trip.
    pub async fn heartbeat(&mut self, state: NodeState) -> RedisResult<()> {
        let stats = self.stats.as_ref().map(|f| f()).unwrap_or_default();
        let description = encode_description(state, &self.info, now_ms(), stats);
        redis::pipe()
            .atomic()
            .hset(keys::nodes(), &self.node_id, description)
            .ignore()
            .cmd("SET")
            .arg(keys::node_alive(&self.node_id))
            .arg(state.as_str())
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .ignore()
            .query_async::<()>(&mut self.conn)
            .await
    }

    /// Graceful shutdown: removes this node's description and alive key at once.
    pub async fn remove(&mut self) -> RedisResult<()> {
        redis::pipe()
            .atomic()
            .hdel(keys::nodes(), &self.node_id)
            .ignore()
            .del(keys::node_alive(&self.node_id))
            .ignore()
            .query_async::<()>(&mut self.conn)
            .await
    }

    /// Every registered node, sorted by id: two round trips (`HGETALL`, then `MGET` of the alive keys).
    /// Descriptions that do not parse are skipped.
    pub async fn list(&mut self) -> RedisResult<Vec<NodeView>> {
        Ok(self
            .raw_entries()
            .await?
            .into_iter()
            .filter_map(|(id, text, state)| decode_description(&id, &text, state))
            .collect())
    }

    /// Removes the descriptions of nodes dead for longer than `older_than`: alive key gone and last
    /// heartbeat more than `older_than` ago by this node's clock (an unreadable description counts as
    /// infinitely old). Returns the ids removed, sorted.
    pub async fn prune_dead(&mut self, older_than: Duration) -> RedisResult<Vec<String>> {
        let cutoff = now_ms().saturating_sub(older_than.as_millis() as u64);
        let candidates: Vec<(String, String)> = self
            .raw_entries()
            .await?
            .into_iter()
            .filter(|(id, text, state)| {
                *state == Liveness::Dead
                    && decode_description(id, text, *state).is_none_or(|v| v.heartbeat_ms < cutoff)
            })
            .map(|(id, text, _)| (id, text))
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, text) in &candidates {
            let mut call = self.prune_script.key(keys::nodes());
            call.key(keys::node_alive(id)).arg(id).arg(text);
            pipe.invoke_script(&call);
        }
        let deleted: Vec<i64> = match pipe.query_async(&mut self.conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.prune_script
                    .prepare_invoke()
                    .load_async(&mut self.conn)
                    .await?;
                pipe.query_async(&mut self.conn).await?
            }
            other => other?,
        };
        Ok(candidates
            .into_iter()
            .zip(deleted)
            .filter(|(_, n)| *n == 1)
            .map(|((id, _), _)| id)
            .collect())
    }

    /// `(id, description, liveness)` of every field of `gateway:nodes`, sorted by id.
    async fn raw_entries(&mut self) -> RedisResult<Vec<(String, String, Liveness)>> {
        let nodes: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(keys::nodes())
            .query_async(&mut self.conn)
            .await?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let alive_keys: Vec<String> = nodes.keys().map(|id| keys::node_alive(id)).collect();
        let alive: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&alive_keys)
            .query_async(&mut self.conn)
            .await?;
        Ok(nodes
            .into_iter()
            .zip(alive)
            .map(|((id, text), a)| (id, text, Liveness::from_alive_key(a.as_deref())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> NodeInfo {
        NodeInfo {
            ws: "10.0.0.1:8080".into(),
            admin: "10.0.0.1:9090".into(),
            started_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn description_has_the_documented_fields() {
        let stats = NodeStats {
            connections: 12,
            shards: 2,
        };
        let text = encode_description(NodeState::Draining, &info(), 1_700_000_005_000, stats);
        assert_eq!(
            text,
            r#"{"state":"draining","ws":"10.0.0.1:8080","admin":"10.0.0.1:9090","started_ms":1700000000000,"heartbeat_ms":1700000005000,"connections":12,"shards":2}"#
        );
        let view = decode_description("gw-1", &text, Liveness::Draining).unwrap();
        assert_eq!(
            view,
            NodeView {
                id: "gw-1".into(),
                state: Liveness::Draining,
                ws: "10.0.0.1:8080".into(),
                admin: "10.0.0.1:9090".into(),
                started_ms: 1_700_000_000_000,
                heartbeat_ms: 1_700_000_005_000,
                connections: 12,
                shards: 2,
            }
        );
    }

    #[test]
    fn liveness_comes_from_the_key_not_the_description() {
        let text = encode_description(NodeState::Alive, &info(), 1, NodeStats::default());
        let view = decode_description("gw-1", &text, Liveness::Dead).unwrap();
        assert_eq!(view.state, Liveness::Dead);
        assert_eq!(Liveness::from_alive_key(None), Liveness::Dead);
        assert_eq!(Liveness::from_alive_key(Some("alive")), Liveness::Alive);
        assert_eq!(
            Liveness::from_alive_key(Some("draining")),
            Liveness::Draining
        );
    }

    #[test]
    fn descriptions_from_other_versions_decode() {
        let view = decode_description(
            "n",
            r#"{"ws":"a","extra":true,"later":{"x":[1,null]},"heartbeat_ms":5}"#,
            Liveness::Alive,
        )
        .unwrap();
        assert_eq!((view.ws.as_str(), view.admin.as_str()), ("a", ""));
        assert_eq!((view.started_ms, view.heartbeat_ms), (0, 5));
        assert!(decode_description("n", "not json", Liveness::Alive).is_none());
        assert!(decode_description("n", r#"{"heartbeat_ms":"5"}"#, Liveness::Alive).is_none());
    }

    #[test]
    fn addresses_are_escaped() {
        let odd = NodeInfo {
            ws: "wss://h/\"q\"\\\n".into(),
            admin: "é".into(),
            started_ms: 1,
        };
        let text = encode_description(NodeState::Alive, &odd, 2, NodeStats::default());
        let view = decode_description("n", &text, Liveness::Alive).unwrap();
        assert_eq!((view.ws, view.admin), (odd.ws, odd.admin));
    }

    #[test]
    fn state_names() {
        assert_eq!(NodeState::Alive.as_str(), "alive");
        assert_eq!(NodeState::Draining.as_str(), "draining");
        assert_eq!(Liveness::Dead.as_str(), "dead");
    }
}
