//! Channel presence in Redis: which users subscribe to a channel, on which node.
//!
//! Each channel with subscribers has a hash `gateway:ch:<name>:members` with one field per (node, user):
//! `<node id>\n<user>` → `1`. A node writes a field when a user's first connection on that node
//! subscribes and deletes it when the user's last one leaves, and adds the channel to its set
//! `gateway:node:<id>:channels` so that its fields can be found again without scanning Redis.
//!
//! Why no timestamp or TTL per field, unlike user presence: fields change only on join and leave (no
//! refresh traffic proportional to subscriptions, which would be the largest write load of a big
//! node), and liveness comes from the node registry instead. Readers keep only fields whose node's
//! alive key exists ([`ChannelMembers::members`]), so a crashed node's members stop counting when its
//! alive key expires (15 s by default). Its fields are then deleted by the next live node's sweep
//! ([`ChannelMembers::remove_node`], run for each dead node at heartbeat), and a graceful shutdown deletes
//! the node's own fields at once. After a Redis restart the bridge re-asserts every member it has.

use std::collections::{BTreeSet, HashMap};

use super::conn::Conn;
use redis::{RedisResult, Script};

use super::keys;
use crate::cluster::presence::BATCH;

/// The clean-up script: every field a node wrote in one channel.
const REMOVE_NODE: &str = include_str!("members.lua");

/// Channel presence of one node, on one Redis connection.
pub struct ChannelMembers {
    conn: Conn,
    node_id: String,
    remove_script: Script,
}

/// One membership change: (channel, user, joined).
pub type MemberChange<'a> = (&'a str, &'a str, bool);

impl ChannelMembers {
    /// The store of node `node_id`.
    pub fn new(conn: impl Into<Conn>, node_id: impl Into<String>) -> Self {
        ChannelMembers {
            conn: conn.into(),
            node_id: node_id.into(),
            remove_script: Script::new(REMOVE_NODE),
        }
    }

    /// Applies membership changes, [`BATCH`] per pipelined round trip.
    pub async fn apply(&mut self, changes: &[MemberChange<'_>]) -> RedisResult<()> {
        let own = keys::node_channels(&self.node_id);
        for chunk in changes.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for &(channel, user, joined) in chunk {
                let key = keys::channel_members(channel);
                let field = keys::member_field(&self.node_id, user);
                if joined {
                    pipe.hset(&key, field, 1).ignore();
                    pipe.sadd(&own, channel).ignore();
                } else {
                    pipe.hdel(&key, field).ignore();
                }
            }
            pipe.query_async::<()>(&mut self.conn).await?;
        }
        Ok(())
    }

    /// This node has no subscriber of these channels any more: drops them from its set.
    pub async fn forget_channels<C: AsRef<str>>(&mut self, channels: &[C]) -> RedisResult<()> {
        let own = keys::node_channels(&self.node_id);
        for chunk in channels.chunks(BATCH) {
            let names: Vec<&str> = chunk.iter().map(|c| c.as_ref()).collect();
            redis::cmd("SREM")
                .arg(&own)
                .arg(&names)
                .query_async::<()>(&mut self.conn)
                .await?;
        }
        Ok(())
    }

    /// The users subscribed to `channel` on live nodes other than `skip_node`, sorted and distinct: the
    /// member hash read with the alive keys of the nodes it names (two round trips).
    pub async fn members(&mut self, channel: &str, skip_node: &str) -> RedisResult<Vec<String>> {
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(keys::channel_members(channel))
            .query_async(&mut self.conn)
            .await?;
        let mut by_node: HashMap<&str, Vec<&str>> = HashMap::new();
        for field in &fields {
            if let Some((node, user)) = keys::parse_member_field(field)
                && node != skip_node
            {
                by_node.entry(node).or_default().push(user);
            }
        }
        let nodes: Vec<&str> = by_node.keys().copied().collect();
        let alive = self.alive(&nodes).await?;
        let mut users = BTreeSet::new();
        for (node, live) in nodes.iter().zip(alive) {
            if live {
                users.extend(by_node[node].iter().map(|u| u.to_string()));
            }
        }
        Ok(users.into_iter().collect())
    }

    /// Which of `nodes` have their alive key, in order (one round trip).
    async fn alive(&mut self, nodes: &[&str]) -> RedisResult<Vec<bool>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in nodes {
            pipe.exists(keys::node_alive(node));
        }
        pipe.query_async(&mut self.conn).await
    }

    /// Deletes every member field `node` wrote, and its channel set; returns the fields deleted. Run for
    /// this node at shutdown and, by any live node, for a node whose alive key expired. One script
    /// per channel of the node's set (each in its channel's slot), [`BATCH`] per round trip; the set
    /// goes last, so a clean-up cut short is finished by the next.
    pub async fn remove_node(&mut self, node: &str) -> RedisResult<u64> {
        let own = keys::node_channels(node);
        let channels: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&own)
            .query_async(&mut self.conn)
            .await?;
        let mut deleted = 0;
        for chunk in channels.chunks(BATCH) {
            // Rare (shutdown, a node died): the script is loaded in every round trip.
            let mut pipe = redis::pipe();
            pipe.load_script(&self.remove_script).ignore();
            for channel in chunk {
                let mut call = self.remove_script.key(keys::channel_members(channel));
                call.arg(node);
                pipe.invoke_script(&call);
            }
            let counts: Vec<u64> = pipe.query_async(&mut self.conn).await?;
            deleted += counts.iter().sum::<u64>();
        }
        redis::cmd("DEL")
            .arg(&own)
            .query_async::<()>(&mut self.conn)
            .await?;
        Ok(deleted)
    }

    /// [`remove_node`](Self::remove_node) for this node.
    pub async fn remove_own(&mut self) -> RedisResult<u64> {
        let node = self.node_id.clone();
        self.remove_node(&node).await
    }
}
