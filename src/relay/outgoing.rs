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
//!
//! With history on, a direct message or a publication to a channel with history goes through the
//! append script (`cluster::history`) in that same first round trip instead: the script numbers and
//! keeps it and publishes it too (to every node holding the user, or on the channel's topic), so it
//! adds nothing to the second. Every node that gets it, this one included, delivers it from its
//! listening connection: that is what keeps a stream's `seq` order on every node, whichever nodes
//! sent its messages.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use shards::{
    ids::owner_of,
    inbox::Inbox,
    messages::{Ack, ChannelMsg, Origin, ShardMsg, UserMsg},
    route::answer_from_outside,
};
use tokio::sync::mpsc;
use tracing::warn;

use super::{Relay, degraded_ack, degraded_publish_ack, envelope};
use crate::cluster::{
    history::{Appended, HistoryStore},
    keys,
    presence::live_fields,
};

/// A presence hash's fields: node id → `"<count>:<ts_ms>"`.
type PresenceHash = Vec<(String, String)>;

/// Most messages sent in one pipeline.
const BATCH: usize = 512;

/// A message for the other nodes, already delivered to `local` connections of this node (`Seq`: not
/// yet delivered anywhere).
pub(super) enum Outgoing {
    /// A direct message to `to` with history on: numbered, kept and published to every holding node
    /// (this one included) by one script; not yet delivered anywhere.
    Seq {
        to: Arc<str>,
        frame: Bytes,
        /// This node holds `to` (its owner shard's directory).
        here: bool,
        origin: Origin,
        /// Holding nodes that received it, once published.
        receivers: u64,
    },
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
    /// A publication to `channel`, a channel with history: numbered, kept and published by one
    /// script; not yet delivered anywhere.
    SeqPub {
        channel: Arc<str>,
        frame: Bytes,
        origin: Origin,
        /// Nodes that received it, once published.
        receivers: u64,
    },
}

impl Outgoing {
    /// Answers the origin without the other nodes (Redis failed). A message with history that Redis
    /// never numbered is delivered here unnumbered. When Redis `may_have_numbered` it (the request
    /// went out and its reply was lost), the script may have kept and published the numbered copy,
    /// which then reaches every holder, this node included: a local unnumbered copy would be a second
    /// delivery. Such a message is answered `unavailable` and left to its numbered copy, if any.
    pub(super) fn answer_degraded(self, inboxes: &[Arc<Inbox>], may_have_numbered: bool) {
        let (ack, origin) = match self {
            Outgoing::Seq { origin, .. } if may_have_numbered => (degraded_ack(0), origin),
            Outgoing::Seq {
                to, frame, origin, ..
            } => {
                return deliver_unnumbered(to, frame, origin, inboxes);
            }
            Outgoing::Dm { local, origin, .. } => (degraded_ack(local), origin),
            Outgoing::Pub { local, origin, .. } => (degraded_publish_ack(local), origin),
            Outgoing::SeqPub { origin, .. } if may_have_numbered => {
                (degraded_publish_ack(0), origin)
            }
            Outgoing::SeqPub {
                channel,
                frame,
                origin,
                ..
            } => return publish_unnumbered(channel, frame, origin, inboxes),
        };
        answer_from_outside(origin, ack, inboxes);
    }
}

/// The error of a round trip cut at the relay's deadline: the request may have run.
fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no reply within the relay's bound",
    ))
}

/// True when a failed request may still have run on the server: it failed in transport (the
/// connection dropped or timed out, possibly after the request was written), not on a refused
/// connection and not with an error reply (Redis answered, so a script that failed did not run).
pub(crate) fn may_have_run(e: &redis::RedisError) -> bool {
    e.is_io_error() && !e.is_connection_refusal()
}

/// Delivers a direct message to this node's connections of `to`, unnumbered (its history could not be
/// written), and answers `origin` as a send without the other nodes: `delivered` with this node's
/// count, or `unavailable`.
pub(crate) fn deliver_unnumbered(
    to: Arc<str>,
    frame: Bytes,
    origin: Origin,
    inboxes: &[Arc<Inbox>],
) {
    let Some(inbox) = inboxes.get(owner_of(&to, inboxes.len().max(1))) else {
        return answer_from_outside(origin, degraded_ack(0), inboxes);
    };
    let answer_inboxes: Arc<[Arc<Inbox>]> = inboxes.into();
    let reply = Origin::External(Box::new(move |ack: Ack| {
        answer_from_outside(origin, degraded_ack(ack.conns), &answer_inboxes)
    }));
    let msg = UserMsg::Route {
        to,
        frame,
        reply,
        local_only: true,
        seq: 0,
    };
    if let Err(msg) = inbox.send(msg) {
        warn!("owner shard inbox full; an unnumbered message is dropped");
        if let ShardMsg::User(UserMsg::Route { reply, .. }) = msg {
            answer_from_outside(reply, degraded_ack(0), &[]);
        }
    }
}

/// Delivers a publication to this node's subscribers of `channel`, unnumbered (its history could not
/// be written), and answers `origin` as a publish without the other nodes (`unavailable`, with this
/// node's count).
pub(crate) fn publish_unnumbered(
    channel: Arc<str>,
    frame: Bytes,
    origin: Origin,
    inboxes: &[Arc<Inbox>],
) {
    let Some(inbox) = inboxes.get(owner_of(&channel, inboxes.len().max(1))) else {
        return answer_from_outside(origin, degraded_publish_ack(0), inboxes);
    };
    let answer_inboxes: Arc<[Arc<Inbox>]> = inboxes.into();
    let reply = Origin::External(Box::new(move |ack: Ack| {
        answer_from_outside(origin, degraded_publish_ack(ack.conns), &answer_inboxes)
    }));
    let msg = ChannelMsg::Publish {
        channel,
        frame,
        reply,
        self_subscribed: false,
        local_only: true,
        seq: 0,
    };
    if let Err(msg) = inbox.send(msg) {
        warn!("owner shard inbox full; an unnumbered publication is dropped");
        if let ShardMsg::Channel(ChannelMsg::Publish { reply, .. }) = msg {
            answer_from_outside(reply, degraded_publish_ack(0), &[]);
        }
    }
}

/// One message of a batch once published: its correlation (none: nobody else to ask) and the
/// answers to wait for.
struct Sent {
    item: Outgoing,
    corr: Option<u64>,
    expected: usize,
}

/// Sends batches until the relay's session ends ([`Relay::end`]); what is queued then was never sent
/// and is answered as such (refused: an unnumbered local copy where the recipient is here). Nothing is
/// written to Redis after the end: the bridge ends a session when its master is being failed over,
/// and a message the old master numbered then would be lost with it.
pub(super) async fn run(relay: Arc<Relay>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut ended = relay.ended.subscribe();
    loop {
        let received = tokio::select! {
            biased;
            _ = ended.wait_for(|e| *e) => 0,
            n = rx.recv_many(&mut batch, BATCH) => n,
        };
        if received == 0 || *ended.borrow() {
            rx.close();
            while let Ok(item) = rx.try_recv() {
                batch.push(item);
            }
            for item in batch.drain(..) {
                item.answer_degraded(&relay.inboxes, false);
            }
            return;
        }
        let items = std::mem::take(&mut batch);
        // Both round trips share the bound; each is cut at the deadline with its items kept, so
        // every origin is answered, also when Redis stops answering.
        let deadline = tokio::time::Instant::now() + super::RELAY_TIMEOUT;
        match send(&relay, items, deadline).await {
            Ok(sent) => {
                let relay = relay.clone();
                tokio::spawn(async move { answer(&relay, sent).await });
            }
            Err((e, items)) => {
                let unsure = may_have_run(&e);
                warn!(error = %e, messages = items.len(), unsure, "cross-node send failed");
                for item in items {
                    item.answer_degraded(&relay.inboxes, unsure);
                }
            }
        }
    }
}

/// What the first round trip learned: the holders of each plain direct message's recipient, and
/// the numbering of each message with history (direct or channel), in queue order.
struct Looked {
    holders: HashMap<Arc<str>, Vec<String>>,
    appended: std::vec::IntoIter<Appended>,
}

/// A message with history for the first round trip: its stream, frame and envelope head.
struct ToNumber {
    stream: Stream,
    frame: Bytes,
    head: Vec<u8>,
    /// The message's id (see [`crate::cluster::history::message_id`]), the same however often the
    /// append is sent.
    id: u64,
}

/// Whose stream a message with history goes to.
enum Stream {
    /// A user's, and whether this node holds the user.
    User(Arc<str>, bool),
    Channel(Arc<str>),
}

/// Numbers (history) or looks up (no history) every direct message of `items`, then publishes every
/// message without history in order (the append script published the others). A round trip still
/// unanswered at `deadline` fails as a timeout.
async fn send(
    relay: &Arc<Relay>,
    mut items: Vec<Outgoing>,
    deadline: tokio::time::Instant,
) -> Result<Vec<Sent>, (redis::RedisError, Vec<Outgoing>)> {
    let mut users = Vec::new();
    let mut numbered = Vec::new();
    // Correlations of the messages with history, registered before the script publishes them.
    let mut corrs = Vec::new();
    for item in &items {
        let (stream, frame, head) = match item {
            Outgoing::Dm { to, .. } => {
                users.push(to.clone());
                continue;
            }
            Outgoing::Pub { .. } => continue,
            Outgoing::Seq {
                to, frame, here, ..
            } => {
                let corr = relay.expect();
                corrs.push(corr);
                let head = envelope::numbered_dm_head(corr, &relay.node_id, to);
                (Stream::User(to.clone(), *here), frame, head)
            }
            Outgoing::SeqPub { channel, frame, .. } => {
                let corr = relay.expect();
                corrs.push(corr);
                let head = envelope::numbered_publication_head(corr, &relay.node_id, channel);
                (Stream::Channel(channel.clone()), frame, head)
            }
        };
        numbered.push(ToNumber {
            stream,
            frame: frame.clone(),
            head,
            id: crate::cluster::history::message_id(),
        });
    }
    let looked = tokio::time::timeout_at(deadline, look_up(relay, users, numbered)).await;
    let mut looked = match looked.unwrap_or_else(|_| Err(timed_out())) {
        Ok(l) => l,
        Err(e) => {
            for corr in corrs {
                relay.forget(corr);
            }
            return Err((e, items));
        }
    };
    let mut corrs = corrs.into_iter();
    let mut pipe = redis::pipe();
    let mut sent = Vec::with_capacity(items.len());
    // Per message: how many publishes it added to the pipeline.
    let mut publishes = Vec::with_capacity(items.len());
    for mut item in items.drain(..) {
        let (corr, count) = match &mut item {
            Outgoing::Seq { receivers, .. } | Outgoing::SeqPub { receivers, .. } => {
                let (Some(a), Some(corr)) = (looked.appended.next(), corrs.next()) else {
                    continue;
                };
                *receivers = a.receivers;
                // Published by the script already.
                (Some(corr), 0)
            }
            Outgoing::Dm { to, frame, .. } => {
                let nodes = &looked.holders[&**to];
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
            Outgoing::Pub {
                channel,
                frame,
                origin,
                ..
            } => {
                let corr = relay.expect();
                let env = match origin {
                    Origin::Skip { socket, .. } => {
                        envelope::skipping_publication(corr, &relay.node_id, channel, socket, frame)
                    }
                    _ => envelope::publication(corr, &relay.node_id, channel, frame),
                };
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
        let replies = tokio::time::timeout_at(deadline, pipe.query_async(&mut conn)).await;
        match replies.unwrap_or_else(|_| Err(timed_out())) {
            Ok(r) => r,
            Err(e) => {
                // The messages with history are numbered and published already (the first round
                // trip succeeded): they go on to their answers. Only the plain ones failed.
                warn!(error = %e, "cross-node publishes failed");
                let mut numbered = Vec::new();
                for s in sent {
                    match s.item {
                        Outgoing::Seq { .. } | Outgoing::SeqPub { .. } => numbered.push(s),
                        item => {
                            if let Some(corr) = s.corr {
                                relay.forget(corr);
                            }
                            item.answer_degraded(&relay.inboxes, false);
                        }
                    }
                }
                sent = numbered;
                publishes = vec![0; sent.len()];
                Vec::new()
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
            // A holding node nobody listens for (dead, not expired yet) will never answer. On a
            // Redis Cluster PUBLISH counts this server's listeners only: every live holder counts.
            Outgoing::Dm { .. } if keys::hash_tags() => replies.len(),
            Outgoing::Dm { .. } => replies.iter().filter(|&&r| r > 0).count(),
            // Every node listening to the topic answers, this one included (with 0).
            Outgoing::Pub { .. } => replies.iter().map(|&r| r.max(0) as usize).sum(),
            // Every node that got it answers, this one with the connections it delivered to.
            Outgoing::Seq { receivers, .. } | Outgoing::SeqPub { receivers, .. } => {
                receivers as usize
            }
        };
        match &s.item {
            Outgoing::Dm { .. } => {
                metrics::counter!("gateway_cluster_messages_out_total").increment(count as u64)
            }
            Outgoing::Seq { .. } => {
                metrics::counter!("gateway_cluster_messages_out_total").increment(1)
            }
            Outgoing::Pub { .. } | Outgoing::SeqPub { .. } => {
                metrics::counter!("gateway_cluster_publications_out_total").increment(1)
            }
        }
    }
    Ok(sent)
}

/// The first round trip of a batch: `TIME` and the presence of every plain direct message's
/// recipient, then the append script for every message with history, in queue order.
async fn look_up(
    relay: &Relay,
    mut users: Vec<Arc<str>>,
    numbered: Vec<ToNumber>,
) -> redis::RedisResult<Looked> {
    users.sort_unstable();
    users.dedup();
    if users.is_empty() && numbered.is_empty() {
        return Ok(Looked {
            holders: HashMap::new(),
            appended: Vec::new().into_iter(),
        });
    }
    let scripts = !numbered.is_empty();
    let publish = if relay.sharded { "SPUBLISH" } else { "PUBLISH" };
    let mut replies: redis::RedisResult<Vec<redis::Value>> =
        Err(redis::RedisError::from(std::io::Error::other("not sent")));
    for _ in 0..2 {
        let mut pipe = redis::pipe();
        if scripts {
            relay.history.prepare(&mut pipe);
        }
        pipe.cmd("TIME");
        for user in &users {
            pipe.cmd("HGETALL").arg(keys::presence(user));
        }
        for n in &numbered {
            match &n.stream {
                Stream::User(to, here) => {
                    let how = (&n.head[..], relay.presence_ttl, &*relay.node_id, *here);
                    relay.history.append(&mut pipe, to, &n.frame, how, n.id);
                }
                Stream::Channel(channel) => {
                    let topic = keys::channel(channel);
                    let how = (publish, topic.as_str(), &n.head[..]);
                    relay
                        .history
                        .append_channel(&mut pipe, channel, &n.frame, how, n.id);
                }
            }
        }
        let mut conn = relay.conn.clone();
        replies = pipe.query_async(&mut conn).await;
        if !scripts || !relay.history.after(&replies) {
            break;
        }
    }
    let mut replies = replies?.into_iter();
    let time: (u64, u64) = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))?;
    let now = time.0 * 1000 + time.1 / 1000;
    let cutoff = now.saturating_sub(relay.presence_ttl.as_millis() as u64);
    let mut holders = HashMap::with_capacity(users.len());
    for user in users {
        let fields: PresenceHash =
            redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))?;
        let nodes = live_fields(fields, cutoff)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| *n != relay.node_id)
            .collect();
        holders.insert(user, nodes);
    }
    let appended = replies
        .map(HistoryStore::parse_append)
        .collect::<redis::RedisResult<Vec<_>>>()?;
    Ok(Looked {
        holders,
        appended: appended.into_iter(),
    })
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
            // Kept in history whatever happens: `stored` when no connection got it.
            Outgoing::Seq { origin, .. } => {
                let status = if remote > 0 { "delivered" } else { "stored" };
                (
                    Ack {
                        status,
                        conns: remote,
                    },
                    origin,
                )
            }
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
            Outgoing::SeqPub { origin, .. } => (
                Ack {
                    status: "published",
                    conns: remote,
                },
                origin,
            ),
        };
        answer_from_outside(origin, ack, &relay.inboxes);
    }
}
