//! Occupancy across the cluster, for webhooks: is a channel occupied (a subscriber on some node),
//! is a v1 user online (a connection on some node), and the grace of their going, decided in Redis
//! so that exactly one node sends each `channel_occupied`/`channel_vacated` and
//! `user_online`/`user_offline`, and a quick return anywhere cancels a going decided elsewhere.
//!
//! Keys (only written when webhooks are configured): `gateway:occ:<kind>:<name>:nodes` (the nodes
//! holding it), `gateway:occ:<kind>:<name>:going` (a going's marker, the deciding node's token, with
//! a TTL), `gateway:node:<id>:occ:<kind>` (what a node holds, swept when it dies).

use super::conn::Conn;
use redis::{RedisResult, Script};

use super::keys;

/// What is tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Channels (any: v1 and Pusher apps').
    Channel,
    /// Protocol v1 users.
    User,
    /// Pusher presence members, named `<channel>\n<member>` (their first join and last leave are
    /// decided by the presence script; this adds the grace of `member_removed`).
    Member,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Channel => "ch",
            Kind::User => "user",
            Kind::Member => "member",
        }
    }
}

/// What a change decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to send.
    Nothing,
    /// First anywhere: send occupied/online now.
    Came,
    /// Last anywhere: hold the going for the grace, then [`Occupancy::confirm`] it.
    Going,
}

const CHANGE: &str = include_str!("occupancy.lua");
const CONFIRM: &str = include_str!("occupancy_confirm.lua");
const SWEEP: &str = include_str!("occupancy_sweep.lua");

/// Occupancy of one node, on one Redis connection.
pub struct Occupancy {
    conn: Conn,
    node_id: String,
    change: Script,
    confirm: Script,
    sweep: Script,
}

fn prefix(kind: Kind) -> String {
    format!("gateway:occ:{}:", kind.tag())
}

fn nodes_key(kind: Kind, name: &str) -> String {
    format!("{}{name}:nodes", prefix(kind))
}

fn going_key(kind: Kind, name: &str) -> String {
    format!("{}{name}:going", prefix(kind))
}

fn held_key(kind: Kind, node: &str) -> String {
    format!("{}{node}:occ:{}", keys::NODE_PREFIX, kind.tag())
}

impl Occupancy {
    /// The store of node `node_id`.
    pub fn new(conn: impl Into<Conn>, node_id: impl Into<String>) -> Self {
        Occupancy {
            conn: conn.into(),
            node_id: node_id.into(),
            change: Script::new(CHANGE),
            confirm: Script::new(CONFIRM),
            sweep: Script::new(SWEEP),
        }
    }

    /// `name`'s first holder on this node came (`came`) or its last went; `token` marks a going
    /// as this call's, for `marker_ms`.
    pub async fn change(
        &mut self,
        kind: Kind,
        name: &str,
        came: bool,
        (token, marker_ms): (&str, u64),
    ) -> RedisResult<Decision> {
        let n: i64 = self
            .change
            .key(nodes_key(kind, name))
            .key(going_key(kind, name))
            .key(held_key(kind, &self.node_id))
            .arg(&self.node_id)
            .arg(if came { "1" } else { "0" })
            .arg(marker_ms.max(1))
            .arg(token)
            .arg(name)
            .invoke_async(&mut self.conn)
            .await?;
        Ok(match n {
            1 => Decision::Came,
            3 => Decision::Going,
            _ => Decision::Nothing,
        })
    }

    /// Confirms every going now (shutdown: no grace left to wait).
    pub fn kinds() -> [Kind; 3] {
        [Kind::Channel, Kind::User, Kind::Member]
    }

    /// The grace of a going of `name` (marked `token`) ended: true when it still holds.
    pub async fn confirm(&mut self, kind: Kind, name: &str, token: &str) -> RedisResult<bool> {
        let n: i64 = self
            .confirm
            .key(going_key(kind, name))
            .key(nodes_key(kind, name))
            .arg(token)
            .invoke_async(&mut self.conn)
            .await?;
        Ok(n == 1)
    }

    /// Dead `node`'s holdings: the names it leaves with no holder anywhere.
    pub async fn sweep(&mut self, kind: Kind, node: &str) -> RedisResult<Vec<String>> {
        self.sweep
            .key(held_key(kind, node))
            .arg(node)
            .arg(prefix(kind))
            .arg(":nodes")
            .invoke_async(&mut self.conn)
            .await
    }
}
