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

fn nodes_key(kind: Kind, name: &str) -> String {
    keys::occupancy_nodes(kind.tag(), name)
}

fn going_key(kind: Kind, name: &str) -> String {
    keys::occupancy_going(kind.tag(), name)
}

fn held_key(kind: Kind, node: &str) -> String {
    keys::node_held(node, kind.tag())
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
        // The node's set of what it holds is in the node's slot, the name's keys in the name's: the
        // set names it from before the node counts in it until after the node left it, so a sweep
        // after this node's death finds everything it held.
        let held = held_key(kind, &self.node_id);
        if came {
            redis::cmd("SADD")
                .arg(&held)
                .arg(name)
                .query_async::<()>(&mut self.conn)
                .await?;
        }
        let n: i64 = self
            .change
            .key(nodes_key(kind, name))
            .key(going_key(kind, name))
            .arg(&self.node_id)
            .arg(if came { "1" } else { "0" })
            .arg(marker_ms.max(1))
            .arg(token)
            .invoke_async(&mut self.conn)
            .await?;
        if !came {
            redis::cmd("SREM")
                .arg(&held)
                .arg(name)
                .query_async::<()>(&mut self.conn)
                .await?;
        }
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

    /// Dead `node`'s holdings: the names it leaves with no holder anywhere. One script per name (in
    /// the name's slot), pipelined; the node's set goes last.
    pub async fn sweep(&mut self, kind: Kind, node: &str) -> RedisResult<Vec<String>> {
        let held = held_key(kind, node);
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&held)
            .query_async(&mut self.conn)
            .await?;
        let mut out = Vec::new();
        for chunk in names.chunks(super::presence::BATCH) {
            // Rare (a node died): the script is loaded in every round trip.
            let mut pipe = redis::pipe();
            pipe.load_script(&self.sweep).ignore();
            for name in chunk {
                let mut call = self.sweep.key(nodes_key(kind, name));
                call.arg(node);
                pipe.invoke_script(&call);
            }
            let emptied: Vec<i64> = pipe.query_async(&mut self.conn).await?;
            out.extend(
                chunk
                    .iter()
                    .zip(emptied)
                    .filter(|(_, e)| *e == 1)
                    .map(|(n, _)| n.clone()),
            );
        }
        redis::cmd("DEL")
            .arg(&held)
            .query_async::<()>(&mut self.conn)
            .await?;
        Ok(out)
    }
}
