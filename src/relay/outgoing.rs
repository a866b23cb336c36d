//! The relay's sender: direct messages and publications for the other nodes leave here, in the order
//! the owner shards handed them over, in pipelined batches.
//!
//! Why one task and batches rather than a task per message: two messages from one sender to one user
//! must arrive in order, and two tasks racing through a lookup and a publish do not keep it (the
//! loadtest's cross-node scenario caught messages reordered that way). One task takes whatever is
//! queued (up to [`BATCH`]), looks up every distinct recipient in one round trip (`TIME` once, then
//! `HGETALL presence:<user>` per user), and publishes every envelope in one pipeline, in queue order;
//! Redis delivers a connection's publishes in order, and each receiving node injects them into its owner
//! shard in that order. The answers are then awaited off this task, in the same order.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use shards::{
    inbox::Inbox,
    messages::{Ack, Origin},
    route::answer_from_outside,
};
use tokio::sync::mpsc;
use tracing::warn;

use super::{Relay, degraded_ack, degraded_publish_ack, envelope};
use crate::cluster::{keys, presence::live_fields};

/// A presence hash's fields: node id → `"<count>:<ts_ms>"`.
type PresenceHash = Vec<(String, String)>;

/// Most messages sent in one pipeline.
const BATCH: usize = 512;

/// A message for the other nodes, already delivered to `local` connections of this node.
pub(super) enum Outgoing {
    /// A direct message to `to`.
    Dm {
        to: Arc<str>,
        frame: Bytes,
        local: u64,
        origin: Origin,
    },
    /// A publication to `channel`.
    Pub {
        channel: Arc<str>,
        frame: Bytes,
        local: u64,
        origin: Origin,
    },
}

impl Outgoing {
    /// Answers the origin without the other nodes (Redis failed).
    pub(super) fn answer_degraded(self, inboxes: &[Arc<Inbox>]) {
        let (ack, origin) = match self {
            Outgoing::Dm { local, origin, .. } => (degraded_ack(local), origin),
            Outgoing::Pub { local, origin, .. } => (degraded_publish_ack(local), origin),
        };
        answer_from_outside(origin, ack, inboxes);
    }
}

/// One message of a batch once published: its correlation (none: nobody else to ask) and the
/// answers to wait for.
struct Sent {
    item: Outgoing,
    corr: Option<u64>,
    expected: usize,
}

/// Sends batches until the channel closes (the relay's connection is gone).
pub(super) async fn run(relay: Arc<Relay>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let items = std::mem::take(&mut batch);
        match tokio::time::timeout(super::RELAY_TIMEOUT, send(&relay, items)).await {
            Ok(Ok(sent)) => {
                let relay = relay.clone();
                tokio::spawn(async move { answer(&relay, sent).await });
            }
            Ok(Err((e, items))) => {
                warn!(error = %e, messages = items.len(), "cross-node send failed");
                for item in items {
                    item.answer_degraded(&relay.inboxes);
                }
            }
            Err(_) => warn!("cross-node send timed out; its origins were not answered"),
        }
    }
}

/// Looks up the recipients and publishes every message of `items`, in order.
async fn send(
    relay: &Relay,
    items: Vec<Outgoing>,
) -> Result<Vec<Sent>, (redis::RedisError, Vec<Outgoing>)> {
    let users: Vec<Arc<str>> = items
        .iter()
        .filter_map(|i| match i {
            Outgoing::Dm { to, .. } => Some(to.clone()),
            Outgoing::Pub { .. } => None,
        })
        .collect();
    let holders = match lookup(relay, users).await {
        Ok(h) => h,
        Err(e) => return Err((e, items)),
    };
    let mut pipe = redis::pipe();
    let mut sent = Vec::with_capacity(items.len());
    // Per message: how many publishes it added to the pipeline.
    let mut publishes = Vec::with_capacity(items.len());
    for item in items {
        let (corr, count) = match &item {
            Outgoing::Dm { to, frame, .. } => {
                let nodes = &holders[to];
                if nodes.is_empty() {
                    (None, 0)
                } else {
                    let corr = relay.expect();
                    let env = envelope::dm(corr, &relay.node_id, to, frame);
                    for node in nodes {
                        pipe.cmd("PUBLISH")
                            .arg(keys::node_channel(node))
                            .arg(&env[..]);
                    }
                    (Some(corr), nodes.len())
                }
            }
            Outgoing::Pub { channel, frame, .. } => {
                let corr = relay.expect();
                let env = envelope::publication(corr, &relay.node_id, channel, frame);
                pipe.cmd(if relay.sharded { "SPUBLISH" } else { "PUBLISH" })
                    .arg(keys::channel(channel))
                    .arg(&env[..]);
                (Some(corr), 1)
            }
        };
        publishes.push(count);
        sent.push(Sent {
            item,
            corr,
            expected: 0,
        });
    }
    let receivers: Vec<i64> = if publishes.iter().any(|&n| n > 0) {
        let mut conn = relay.conn.clone();
        match pipe.query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) => {
                let items = sent
                    .into_iter()
                    .map(|s| {
                        if let Some(corr) = s.corr {
                            relay.forget(corr);
                        }
                        s.item
                    })
                    .collect();
                return Err((e, items));
            }
        }
    } else {
        Vec::new()
    };
    let mut at = 0;
    for (s, count) in sent.iter_mut().zip(publishes) {
        let replies = &receivers[at..at + count];
        at += count;
        s.expected = match s.item {
            // A holding node nobody listens for (dead, not expired yet) will never answer.
            Outgoing::Dm { .. } => replies.iter().filter(|&&r| r > 0).count(),
            // Every node listening to the topic answers, this one included (with 0).
            Outgoing::Pub { .. } => replies.iter().map(|&r| r.max(0) as usize).sum(),
        };
        match s.item {
            Outgoing::Dm { .. } => {
                metrics::counter!("gateway_cluster_messages_out_total").increment(count as u64)
            }
            Outgoing::Pub { .. } => {
                metrics::counter!("gateway_cluster_publications_out_total").increment(1)
            }
        }
    }
    Ok(sent)
}

/// The other live nodes holding each of `users` (one round trip; none for no users).
async fn lookup(
    relay: &Relay,
    mut users: Vec<Arc<str>>,
) -> redis::RedisResult<HashMap<Arc<str>, Vec<String>>> {
    users.sort_unstable();
    users.dedup();
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let mut pipe = redis::pipe();
    pipe.cmd("TIME");
    for user in &users {
        pipe.cmd("HGETALL").arg(keys::presence(user));
    }
    let mut conn = relay.conn.clone();
    let mut replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
    let hashes: Vec<PresenceHash> = replies
        .split_off(1)
        .into_iter()
        .map(redis::from_redis_value)
        .collect::<Result<_, _>>()?;
    let time: (u64, u64) = redis::from_redis_value(replies.pop().unwrap_or(redis::Value::Nil))?;
    let now = time.0 * 1000 + time.1 / 1000;
    let cutoff = now.saturating_sub(relay.presence_ttl.as_millis() as u64);
    Ok(users
        .into_iter()
        .zip(hashes)
        .map(|(user, fields)| {
            let nodes = live_fields(fields, cutoff)
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| *n != relay.node_id)
                .collect();
            (user, nodes)
        })
        .collect())
}

/// Waits for each message's answers, in order, and answers its origin. A node that does not answer
/// within the ack wait was still handed the message: the status stays positive and `conns` counts the
/// answers that came (a lower bound).
async fn answer(relay: &Relay, sent: Vec<Sent>) {
    for s in sent {
        let (remote, _complete) = match s.corr {
            Some(corr) => relay.collect(corr, s.expected).await,
            None => (0, true),
        };
        let (ack, origin) = match s.item {
            Outgoing::Dm { local, origin, .. } => {
                let total = local + remote;
                let status = if total > 0 || s.expected > 0 {
                    "delivered"
                } else {
                    "offline"
                };
                (
                    Ack {
                        status,
                        conns: total,
                    },
                    origin,
                )
            }
            Outgoing::Pub { local, origin, .. } => (
                Ack {
                    status: "published",
                    conns: local + remote,
                },
                origin,
            ),
        };
        answer_from_outside(origin, ack, &relay.inboxes);
    }
}
