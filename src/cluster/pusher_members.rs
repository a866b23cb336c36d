//! Pusher presence members in Redis: the same member hash as channel presence
//! ([`super::members`]), with the member's `user_info` as the field's value, and the decisions only
//! the cluster as a whole can make: is this the member's first socket anywhere (send
//! `member_added`), its last one (send `member_removed`), and which members a dead node took with it.
//!
//! Each decision is one Lua script over the channel's hash (a presence channel holds at most
//! `max_presence_members` members, so the scan is bounded), so it is taken once, by exactly one node,
//! however the nodes interleave.

use std::collections::HashMap;

use super::conn::Conn;
use redis::{RedisResult, Script};

use super::keys;
use shards::pusher::presence::is_presence;

/// A member's join or leave, and its first-or-last decision.
const CHANGE: &str = include_str!("pusher_member.lua");
/// A dead node's members, removed; those gone from the cluster returned.
const SWEEP: &str = include_str!("pusher_sweep.lua");

/// `gateway:ch:<name>:subs` ([`keys::channel_subs`]): the sockets subscribed to an app's channel, one
/// field per node (`<node id>` → count; no field: none), for the HTTP API's `subscription_count`.
fn subs_key(channel: &str) -> String {
    keys::channel_subs(channel)
}

/// Pusher presence of one node, on one Redis connection.
pub struct PusherMembers {
    conn: Conn,
    node_id: String,
    change: Script,
    sweep: Script,
}

impl PusherMembers {
    /// The store of node `node_id`.
    pub fn new(conn: impl Into<Conn>, node_id: impl Into<String>) -> Self {
        PusherMembers {
            conn: conn.into(),
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
        // The node's channel set is in the node's slot, the member hash in the channel's: the set
        // names the channel from before its first field (a sweep must find it) until the node's
        // clean-up, so it needs no atomicity with the decision.
        if info.is_some() {
            redis::cmd("SADD")
                .arg(keys::node_channels(&self.node_id))
                .arg(channel)
                .query_async::<()>(&mut self.conn)
                .await?;
        }
        let decided: i64 = self
            .change
            .key(keys::channel_members(channel))
            .arg(&self.node_id)
            .arg(member)
            .arg(if info.is_some() { "1" } else { "0" })
            .arg(info.unwrap_or(""))
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

    /// Writes this node's subscription counts of app channels (0: the field is deleted).
    pub async fn set_subscriptions(
        &mut self,
        counts: &[(std::sync::Arc<str>, u64)],
    ) -> RedisResult<()> {
        for chunk in counts.chunks(super::presence::BATCH) {
            let mut pipe = redis::pipe();
            for (channel, n) in chunk {
                if *n == 0 {
                    pipe.hdel(subs_key(channel), &self.node_id).ignore();
                } else {
                    pipe.hset(subs_key(channel), &self.node_id, *n).ignore();
                }
            }
            pipe.query_async::<()>(&mut self.conn).await?;
        }
        Ok(())
    }

    /// Writes this node's presence members' `user_info` (channel, member, info), as a re-assertion.
    pub async fn set_infos(&mut self, members: &[shards::control::MemberInfo]) -> RedisResult<()> {
        for chunk in members.chunks(super::presence::BATCH) {
            let mut pipe = redis::pipe();
            for (channel, member, info) in chunk {
                let field = keys::member_field(&self.node_id, member);
                pipe.hset(keys::channel_members(channel), field, &**info)
                    .ignore();
            }
            pipe.query_async::<()>(&mut self.conn).await?;
        }
        Ok(())
    }

    /// The live nodes other than this one.
    async fn other_live_nodes(&mut self) -> RedisResult<Vec<String>> {
        let ids: Vec<String> = redis::cmd("HKEYS")
            .arg(keys::nodes())
            .query_async(&mut self.conn)
            .await?;
        let ids: Vec<String> = ids.into_iter().filter(|i| *i != self.node_id).collect();
        let alive = self.alive(&ids).await?;
        Ok(ids
            .into_iter()
            .zip(alive)
            .filter(|(_, a)| *a)
            .map(|(i, _)| i)
            .collect())
    }

    /// Which of `nodes` have their alive key, in order.
    async fn alive(&mut self, nodes: &[String]) -> RedisResult<Vec<bool>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in nodes {
            pipe.exists(keys::node_alive(node));
        }
        pipe.query_async(&mut self.conn).await
    }

    /// One channel on the other live nodes: subscribed sockets, and members (presence channels).
    pub async fn channel(&mut self, channel: &str) -> RedisResult<(u64, Vec<String>)> {
        let counts: HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(subs_key(channel))
            .query_async(&mut self.conn)
            .await?;
        let live = self.other_live_nodes().await?;
        let subscriptions = live.iter().filter_map(|n| counts.get(n)).sum();
        let members = if is_presence(channel) {
            let node = self.node_id.clone();
            self.members(channel, &node)
                .await?
                .into_iter()
                .map(|(m, _)| m)
                .collect()
        } else {
            Vec::new()
        };
        Ok((subscriptions, members))
    }

    /// The channels of app `app` whose name starts with `prefix` that the other live nodes have
    /// subscribers of, with their members (presence channels).
    pub async fn channels(
        &mut self,
        app: &str,
        prefix: &str,
    ) -> RedisResult<Vec<(String, Vec<String>)>> {
        let start = shards::pusher::names::internal(app, prefix);
        let mut found = std::collections::BTreeSet::new();
        for node in self.other_live_nodes().await? {
            let channels: Vec<String> = redis::cmd("SMEMBERS")
                .arg(keys::node_channels(&node))
                .query_async(&mut self.conn)
                .await?;
            found.extend(channels.into_iter().filter(|c| c.starts_with(&start)));
        }
        let node = self.node_id.clone();
        let mut out = Vec::with_capacity(found.len());
        for channel in found {
            // A node keeps a channel in its set while it has a member field there.
            let members = self.members(&channel, &node).await?;
            if members.is_empty() {
                continue;
            }
            let users = if is_presence(&channel) {
                members.into_iter().map(|(m, _)| m).collect()
            } else {
                Vec::new()
            };
            out.push((channel, users));
        }
        Ok(out)
    }

    /// Removes dead `node`'s presence members and subscription counts; returns `(channel, member)` for
    /// each member that has no socket left anywhere. Run before the node's other members are removed
    /// (that deletes the channel set this reads). One script per app channel, each atomic in its
    /// channel's slot, pipelined.
    pub async fn sweep(&mut self, node: &str) -> RedisResult<Vec<(String, String)>> {
        let channels: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::node_channels(node))
            .query_async(&mut self.conn)
            .await?;
        // App channels' internal names start with the separator (`shards::pusher::names`).
        let app: Vec<&String> = channels.iter().filter(|c| c.starts_with('\u{1}')).collect();
        let mut out = Vec::new();
        for chunk in app.chunks(super::presence::BATCH) {
            // Rare (a node died): the script is loaded in every round trip rather than tracked.
            let mut pipe = redis::pipe();
            pipe.load_script(&self.sweep).ignore();
            for channel in chunk {
                let mut call = self.sweep.key(keys::channel_members(channel));
                call.key(subs_key(channel))
                    .arg(node)
                    .arg(if is_presence(channel) { "1" } else { "0" });
                pipe.invoke_script(&call);
            }
            let gone: Vec<Vec<String>> = pipe.query_async(&mut self.conn).await?;
            for (channel, members) in chunk.iter().zip(gone) {
                out.extend(members.into_iter().map(|m| ((*channel).clone(), m)));
            }
        }
        Ok(out)
    }
}
