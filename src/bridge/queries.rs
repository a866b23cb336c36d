//! Questions the bridge answers from Redis for the shards and the HTTP API: presence across the
//! cluster, and disconnecting a user on every node.
//!
//! A node always knows its own connections exactly, and Redis may lag behind it by a batch window, so
//! every answer is this node's own knowledge (given by the asker) completed with the other nodes'
//! entries in Redis; this node's own entries in Redis are ignored. When Redis fails, the answer is
//! this node's alone.

use std::{sync::Arc, time::Duration};

use redis::RedisResult;

use crate::cluster::conn::Conn;
use shards::{cluster::PresenceQuery, inbox::Inbox};
use tokio::sync::oneshot;
use tracing::warn;

use crate::{
    cluster::{ChannelMembers, PresenceStore, PusherMembers},
    relay::Relay,
};

/// Bound on one query's Redis round trips.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// What answering needs; cheap to clone into each query's task.
#[derive(Clone)]
pub(super) struct Queries {
    pub conn: Conn,
    pub node_id: String,
    pub presence_ttl: Duration,
    pub inboxes: Arc<[Arc<Inbox>]>,
    pub relay: Arc<Relay>,
}

impl Queries {
    /// Completes a client's presence query with the other nodes and replies (this node's answer alone
    /// when Redis fails).
    pub fn presence(&self, query: PresenceQuery) {
        let this = self.clone();
        tokio::spawn(async move {
            let query = match query {
                PresenceQuery::Users { mut users, reply } => {
                    let offline: Vec<usize> = (0..users.len()).filter(|&i| !users[i].1).collect();
                    if !offline.is_empty() {
                        let names: Vec<&str> = offline.iter().map(|&i| &*users[i].0).collect();
                        match bounded(this.store().lookup_many(&names)).await {
                            Ok(found) => {
                                for (&i, holders) in offline.iter().zip(found) {
                                    users[i].1 = holders.iter().any(|(n, _)| *n != this.node_id);
                                }
                            }
                            Err(e) => {
                                warn!(error = %e, "presence lookup failed; answering for this node")
                            }
                        }
                    }
                    PresenceQuery::Users { users, reply }
                }
                PresenceQuery::Channel {
                    channel,
                    mut users,
                    reply,
                } => {
                    let mut members = ChannelMembers::new(this.conn.clone(), this.node_id.clone());
                    match bounded(members.members(&channel, &this.node_id)).await {
                        Ok(remote) => users.extend(remote.into_iter().map(Arc::from)),
                        Err(e) => {
                            warn!(error = %e, "channel presence failed; answering for this node")
                        }
                    }
                    PresenceQuery::Channel {
                        channel,
                        users,
                        reply,
                    }
                }
                PresenceQuery::PusherMembers {
                    channel,
                    mut members,
                    reply,
                } => {
                    let mut store = PusherMembers::new(this.conn.clone(), this.node_id.clone());
                    match bounded(store.members(&channel, &this.node_id)).await {
                        // This node's own members come first and win the dedup.
                        Ok(remote) => members.extend(
                            remote
                                .into_iter()
                                .map(|(m, i)| (Arc::from(m), Arc::from(i))),
                        ),
                        Err(e) => {
                            warn!(error = %e, "presence members failed; answering for this node")
                        }
                    }
                    PresenceQuery::PusherMembers {
                        channel,
                        members,
                        reply,
                    }
                }
            };
            reply_local(query, &this.inboxes);
        });
    }

    /// The other nodes holding `user`, for the HTTP API.
    pub fn lookup(&self, user: Arc<str>, reply: oneshot::Sender<Option<Vec<(String, u32)>>>) {
        let this = self.clone();
        tokio::spawn(async move {
            let found = match bounded(this.store().lookup(&user)).await {
                Ok(holders) => Some(
                    holders
                        .into_iter()
                        .filter(|(n, _)| *n != this.node_id)
                        .collect(),
                ),
                Err(e) => {
                    warn!(error = %e, "presence lookup failed");
                    None
                }
            };
            let _ = reply.send(found);
        });
    }

    /// Closes `user`'s connections on the other nodes, for the HTTP API.
    pub fn disconnect(&self, user: Arc<str>, reply: oneshot::Sender<Option<u64>>) {
        let this = self.clone();
        tokio::spawn(async move {
            let closed = match bounded(this.relay.disconnect(&user)).await {
                Ok(n) => Some(n),
                Err(e) => {
                    warn!(error = %e, "cluster disconnect failed");
                    None
                }
            };
            let _ = reply.send(closed);
        });
    }

    fn store(&self) -> PresenceStore {
        PresenceStore::new(self.conn.clone(), self.node_id.clone(), self.presence_ttl)
    }
}

/// Replies to a presence query with what it holds.
pub(super) fn reply_local(query: PresenceQuery, inboxes: &[Arc<Inbox>]) {
    let (target, msg) = query.answer_msg();
    if let Some(inbox) = inboxes.get(target) {
        let _ = inbox.send(msg);
    }
}

/// Bounds a query's Redis work.
async fn bounded<T>(op: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    match tokio::time::timeout(QUERY_TIMEOUT, op).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Redis query timed out",
        ))),
    }
}
