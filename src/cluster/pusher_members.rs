//! Pusher presence members in Redis: the same member hash as channel presence
//! ([`super::members`]), with the member's `user_info` as the field's value, and the decisions only
//! the cluster as a whole can make: is this the member's first socket anywhere (send
//! `member_added`), its last one (send `member_removed`), and which members a dead node took with it.
//!
//! Each decision is one Lua script over the channel's hash (a presence channel holds at most
//! `max_presence_members` members, so the scan is bounded), so it is taken once, by exactly one node,
//! however the nodes interleave.

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};

use super::keys;

/// A member's join or leave, and its first-or-last decision.
const CHANGE: &str = include_str!("pusher_member.lua");
/// A dead node's members, removed; those gone from the cluster returned.
const SWEEP: &str = include_str!("pusher_sweep.lua");

/// Pusher presence of one node, on one Redis connection.
pub struct PusherMembers {
    conn: ConnectionManager,
    node_id: String,
    change: Script,
    sweep: Script,
}

impl PusherMembers {
    /// The store of node `node_id`.
    pub fn new(conn: ConnectionManager, node_id: impl Into<String>) -> Self {
        PusherMembers {
            conn,
            node_id: node_id.into(),
            change: Script::new(CHANGE),
            sweep: Script::new(SWEEP),
        }
    }

    /// `member` joined `channel` on this node with `info` (`Some`), or left it (`None`); true when
    /// that is its first join or last leave across the cluster.
    pub async fn change(
        &mut self,
        channel: &str,
        member: &str,
        info: Option<&str>,
    ) -> RedisResult<bool> {
        let decided: i64 = self
            .change
            .key(keys::channel_members(channel))
            .key(keys::node_channels(&self.node_id))
            .arg(&self.node_id)
            .arg(member)
            .arg(if info.is_some() { "1" } else { "0" })
            .arg(info.unwrap_or(""))
            .arg(channel)
            .invoke_async(&mut self.conn)
            .await?;
        Ok(decided == 1)
    }

    /// The members of `channel` on live nodes other than `skip_node`, with their info (one per
    /// member: a member on several nodes is listed once).
    pub async fn members(
        &mut self,
        channel: &str,
        skip_node: &str,
    ) -> RedisResult<Vec<(String, String)>> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(keys::channel_members(channel))
            .query_async(&mut self.conn)
            .await?;
        let mut by_node: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
        for (field, info) in &fields {
            if let Some((node, member)) = keys::parse_member_field(field)
                && node != skip_node
            {
                by_node.entry(node).or_default().push((member, info));
            }
        }
        let nodes: Vec<&str> = by_node.keys().copied().collect();
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.exists(keys::node_alive(node));
        }
        let alive: Vec<bool> = if nodes.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn).await?
        };
        let mut out: HashMap<&str, &str> = HashMap::new();
        for (node, live) in nodes.iter().zip(alive) {
            if live {
                out.extend(by_node[node].iter().copied());
            }
        }
        let mut out: Vec<(String, String)> = out
            .into_iter()
            .map(|(m, i)| (m.to_owned(), i.to_owned()))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Removes dead `node`'s presence members; returns `(channel, member)` for each member that has
    /// no socket left anywhere. Run before the node's other members are removed.
    pub async fn sweep(&mut self, node: &str) -> RedisResult<Vec<(String, String)>> {
        let flat: Vec<String> = self
            .sweep
            .key(keys::node_channels(node))
            .arg(node)
            .arg(keys::CHANNEL_PREFIX)
            .arg(keys::MEMBERS_SUFFIX)
            .invoke_async(&mut self.conn)
            .await?;
        Ok(flat
            .chunks_exact(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect())
    }
}
