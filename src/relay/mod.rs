//! Cross-node delivery, run by the bridge: direct messages, channel publications and disconnects go out
//! over Redis pub/sub, the receiving nodes act and answer, and the origin gets one total.
//!
//! - **Direct message with history** (the default): one script numbers and keeps it, reads the user's
//!   presence and publishes an `hdm` envelope on `gateway:node:<id>` of every holding node, this one
//!   included; each delivers it to its connections of the user and answers.
//! - **Direct message** (history off): the owner shard delivered it locally; the relay looks the user
//!   up in Redis presence and publishes a `dm` envelope on `gateway:node:<id>` of every other holding
//!   node.
//! - **Publication with history** (a channel matching `history.channels`): one script numbers, keeps
//!   and publishes it as an `hpub` envelope on the channel's topic; every listening node (this one
//!   included) delivers it to its subscribers, publisher included, and answers.
//! - **Publication**: the owner shard delivered it to this node's subscribers; the relay publishes a `pub`
//!   envelope on the channel's topic `gateway:ch:<name>` (SPUBLISH when the server has sharded pub/sub),
//!   to which exactly the nodes with subscribers listen. A node receiving its own publication (it
//!   listens too when it has subscribers) counts it as answered with 0 and delivers nothing: local
//!   subscribers were served by the owner shard, never twice.
//! - **Disconnect** (`POST /v1/disconnect`): a `disc` envelope to every other node holding the user.
//!
//! Each receiving bridge injects the message into its own owner shard as a local-only route (so it never
//! travels further) and publishes an `ack` with the connections it reached on the origin's node
//! channel. The origin's answer is local + remote; it comes when every node that received the message
//! answered (the receiver count comes from PUBLISH/SPUBLISH itself) or after [`ACK_WAIT`] with what
//! arrived. When Redis cannot be reached the answer says `unavailable` with the local count, at once.

pub mod envelope;
mod listen;
pub(crate) mod outgoing;
pub mod subscriber;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::cluster::conn::Conn;
use bytes::Bytes;
use shards::{
    control,
    history::{Outcome, ResumeRequest, frame_seq, sequenced},
    ids::owner_of,
    inbox::Inbox,
    messages::{Ack, ChannelMsg, HistoryMsg, NodeMsg, Origin, UserMsg},
    ws::CloseReason,
};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::cluster::{
    history::{HistoryStore, StreamOf},
    keys,
    presence::live_fields,
};
use envelope::Envelope;
pub use listen::serve;
use outgoing::Outgoing;

/// Longest an origin waits for the other nodes' acks.
pub const ACK_WAIT: Duration = Duration::from_secs(1);
/// Bound on the lookups and publishes of one relay.
const RELAY_TIMEOUT: Duration = Duration::from_secs(2);

/// The ack of a send when the other nodes cannot be asked: a recipient connected here got the message
/// (`delivered`, local count); one with no connection here may be elsewhere (`unavailable`).
pub fn degraded_ack(local: u64) -> Ack {
    metrics::counter!("gateway_cluster_send_failures_total").increment(1);
    let status = if local > 0 {
        "delivered"
    } else {
        "unavailable"
    };
    Ack {
        status,
        conns: local,
    }
}

/// The ack of a publish when the other nodes cannot be reached: `unavailable`, with the subscribers of
/// this node it did reach.
pub fn degraded_publish_ack(local: u64) -> Ack {
    metrics::counter!("gateway_cluster_publish_failures_total").increment(1);
    Ack {
        status: "unavailable",
        conns: local,
    }
}

/// An origin waiting for remote answers.
struct Pending {
    /// Answers to wait for; unknown (`usize::MAX`) until the publishes returned their receiver counts.
    expected: usize,
    /// Answers arrived.
    arrived: usize,
    /// Connections the answered nodes reached.
    conns: u64,
    /// Completed with the remote total once every expected answer arrived.
    done: Option<oneshot::Sender<u64>>,
}

/// An ack to publish: (origin node, correlation, connections).
type AckOut = (String, u64, u64);

/// The relay of one node, for one Redis connection.
pub struct Relay {
    /// This node's id.
    node_id: String,
    /// Commands (lookups, publishes).
    conn: Conn,
    /// Presence entry life (fields older are ignored, as the script prunes them).
    presence_ttl: Duration,
    /// Channel topics use SPUBLISH.
    sharded: bool,
    /// Every shard's inbox.
    inboxes: Arc<[Arc<Inbox>]>,
    /// Correlation ids.
    next: AtomicU64,
    /// Origins waiting for remote answers.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Answers to other nodes, published by [`serve`]'s ack task.
    acks: mpsc::UnboundedSender<AckOut>,
    /// The receiving end of `acks`, taken by [`serve`].
    acks_rx: Mutex<Option<mpsc::UnboundedReceiver<AckOut>>>,
    /// Direct messages and publications for the other nodes, in order, to [`outgoing::run`].
    out: mpsc::UnboundedSender<Outgoing>,
    /// The receiving end of `out`, taken by [`serve`].
    out_rx: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    /// Message history in Redis.
    history: Arc<HistoryStore>,
    /// Set when the bridge's session on this relay's connection is over ([`Relay::end`]).
    ended: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    /// A relay on `conn`; `sharded`: publish channel topics with SPUBLISH.
    pub fn new(
        node_id: String,
        conn: Conn,
        presence_ttl: Duration,
        sharded: bool,
        inboxes: Arc<[Arc<Inbox>]>,
        history: Arc<HistoryStore>,
    ) -> Arc<Self> {
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let (out, out_rx) = mpsc::unbounded_channel();
        Arc::new(Relay {
            node_id,
            conn,
            presence_ttl,
            sharded,
            inboxes,
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            acks,
            acks_rx: Mutex::new(Some(acks_rx)),
            out,
            out_rx: Mutex::new(Some(out_rx)),
            history,
            ended: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The bridge's session on this relay's connection is over: its tasks stop (what is queued is
    /// answered as not sent) and nothing more is written through it.
    pub fn end(&self) {
        self.ended.send_replace(true);
    }

    /// Numbers and keeps a direct message in `to`'s stream, then delivers it to every node holding `to`
    /// (this one included) and answers `origin`. In order with forwards and publishes.
    pub fn sequence(&self, to: Arc<str>, frame: Bytes, here: bool, origin: Origin) {
        self.hand_over(Outgoing::Seq {
            to,
            frame,
            here,
            origin,
            receivers: 0,
        });
    }

    /// Numbers, keeps and publishes a publication to `channel` (a channel with history), then answers
    /// `origin` with the subscribers reached on every node. In order with forwards and publishes.
    pub fn sequence_publish(&self, channel: Arc<str>, frame: Bytes, origin: Origin) {
        self.hand_over(Outgoing::SeqPub {
            channel,
            frame,
            origin,
            receivers: 0,
        });
    }

    /// Reads the streams of resuming connections (one round trip) and answers each connection's shard.
    /// Called for users once this node's presence for them is written, and for channels once this
    /// node listens to them, so that every message numbered after the read reaches them live.
    pub fn resume(self: &Arc<Self>, reqs: Vec<(StreamOf, Arc<str>, ResumeRequest)>) {
        let relay = self.clone();
        tokio::spawn(async move {
            let positions: Vec<(StreamOf, Arc<str>, shards::history::Position)> = reqs
                .iter()
                .map(|(of, name, req)| (*of, name.clone(), req.from.clone()))
                .collect();
            let mut conn = relay.conn.clone();
            let read = tokio::time::timeout(
                RELAY_TIMEOUT,
                relay.history.resume_many(&mut conn, &positions),
            )
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("history read timed out").into()));
            let answers = match read {
                Ok(answers) => answers,
                Err(e) => {
                    warn!(error = %e, resumes = reqs.len(), "history read failed");
                    reqs.iter()
                        .map(|_| (Outcome::unavailable(), Vec::new()))
                        .collect()
                }
            };
            for ((of, name, req), (outcome, frames)) in reqs.into_iter().zip(answers) {
                match of {
                    StreamOf::User => send_resumed(&relay.inboxes, req, outcome, frames),
                    StreamOf::Channel => {
                        send_chan_resumed(&relay.inboxes, name, req, outcome, frames)
                    }
                }
            }
        });
    }

    /// Forwards a direct message delivered to `local` connections here; answers `origin` with the total.
    /// Forwards and publishes leave in the order they are handed over (see [`outgoing`]).
    pub fn forward(&self, to: Arc<str>, frame: Bytes, local: u64, origin: Origin) {
        self.hand_over(Outgoing::Dm {
            to,
            frame,
            local,
            origin,
        });
    }

    /// Publishes a publication delivered to `local` subscribers here to the other nodes; answers
    /// `origin` with the total.
    pub fn publish(&self, channel: Arc<str>, frame: Bytes, local: u64, origin: Origin) {
        self.hand_over(Outgoing::Pub {
            channel,
            frame,
            local,
            origin,
        });
    }

    fn hand_over(&self, item: Outgoing) {
        if let Err(mpsc::error::SendError(item)) = self.out.send(item) {
            // The sender task is gone with its connection: answer without the other nodes.
            item.answer_degraded(&self.inboxes, false);
        }
    }

    /// Closes `user`'s connections on the other nodes holding it (4010); returns how many were closed.
    pub async fn disconnect(&self, user: &str) -> redis::RedisResult<u64> {
        let nodes = self.holders(user).await?;
        if nodes.is_empty() {
            return Ok(0);
        }
        let corr = self.expect();
        let env = envelope::disconnect(corr, &self.node_id, user);
        let mut conn = self.conn.clone();
        let mut listening = 0;
        for node in &nodes {
            let receivers: i64 = redis::cmd("PUBLISH")
                .arg(keys::node_channel(node))
                .arg(&env[..])
                .query_async(&mut conn)
                .await?;
            // On a cluster PUBLISH counts this server's listeners only: every live holder counts.
            listening += usize::from(receivers > 0 || keys::hash_tags());
        }
        Ok(self.collect(corr, listening).await.0)
    }

    /// The other live nodes holding `user`, from presence (Redis `TIME` in the same round trip, so every
    /// node judges expiry by the same clock).
    async fn holders(&self, user: &str) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.conn.clone();
        let ((secs, micros), fields): ((u64, u64), Vec<(String, String)>) = redis::pipe()
            .cmd("TIME")
            .cmd("HGETALL")
            .arg(keys::presence(user))
            .query_async(&mut conn)
            .await?;
        let now = secs * 1000 + micros / 1000;
        let cutoff = now.saturating_sub(self.presence_ttl.as_millis() as u64);
        Ok(live_fields(fields, cutoff)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| *n != self.node_id)
            .collect())
    }

    /// Registers a new origin waiting for an unknown number of answers; returns its correlation id.
    fn expect(&self) -> u64 {
        let corr = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            corr,
            Pending {
                expected: usize::MAX,
                arrived: 0,
                conns: 0,
                done: None,
            },
        );
        corr
    }

    /// Now that `expected` answers are known to come, waits for them (at most [`ACK_WAIT`]); returns
    /// the connections they reported and whether every answer came.
    async fn collect(&self, corr: u64, expected: usize) -> (u64, bool) {
        let rx = {
            let mut pending = self.lock();
            let Some(entry) = pending.get_mut(&corr) else {
                return (0, true);
            };
            entry.expected = expected;
            if entry.arrived >= expected {
                return (pending.remove(&corr).map_or(0, |p| p.conns), true);
            }
            let (tx, rx) = oneshot::channel();
            entry.done = Some(tx);
            rx
        };
        match tokio::time::timeout(ACK_WAIT, rx).await {
            Ok(Ok(conns)) => (conns, true),
            _ => {
                metrics::counter!("gateway_cluster_ack_timeouts_total").increment(1);
                (self.lock().remove(&corr).map_or(0, |p| p.conns), false)
            }
        }
    }

    /// Forgets an origin whose messages could not be published.
    fn forget(&self, corr: u64) {
        self.lock().remove(&corr);
    }

    /// One answer to `corr` arrived.
    fn answered(&self, corr: u64, conns: u64) {
        let mut pending = self.lock();
        let Some(entry) = pending.get_mut(&corr) else {
            return;
        };
        entry.conns += conns;
        entry.arrived += 1;
        if entry.arrived >= entry.expected
            && let Some(p) = pending.remove(&corr)
            && let Some(done) = p.done
        {
            let _ = done.send(p.conns);
        }
    }

    /// Handles a message from this node's channel or a channel topic.
    fn on_message(self: &Arc<Self>, payload: &[u8]) {
        match envelope::parse(payload) {
            Some(Envelope::Dm {
                corr,
                origin,
                to,
                frame,
            }) => {
                metrics::counter!("gateway_cluster_messages_in_total").increment(1);
                let to: Arc<str> = Arc::from(to);
                let owner = owner_of(&to, self.inboxes.len());
                let msg = UserMsg::Route {
                    to,
                    frame: Bytes::copy_from_slice(frame),
                    reply: Origin::External(self.answer_to(origin, corr)),
                    local_only: true,
                    seq: frame_seq(frame),
                };
                if self.inboxes[owner].send(msg).is_err() {
                    warn!("owner shard inbox full; dropping a cross-node message");
                }
            }
            Some(Envelope::NumberedDm {
                corr,
                origin,
                to,
                seq,
                epoch,
                frame,
            }) => {
                if origin != self.node_id {
                    metrics::counter!("gateway_cluster_messages_in_total").increment(1);
                }
                let to: Arc<str> = Arc::from(to);
                let owner = owner_of(&to, self.inboxes.len());
                let frame = sequenced(&Bytes::copy_from_slice(frame), seq, epoch);
                let msg = UserMsg::Route {
                    to,
                    frame,
                    reply: self.numbered_reply(origin, corr),
                    local_only: true,
                    seq,
                };
                if self.inboxes[owner].send(msg).is_err() {
                    warn!("owner shard inbox full; dropping a numbered message (kept in history)");
                }
            }
            Some(
                Envelope::Pub { corr, origin, .. } | Envelope::SkippingPub { corr, origin, .. },
            ) if origin == self.node_id => {
                // Our own publication: local subscribers were served by the owner shard.
                self.answered(corr, 0);
            }
            Some(Envelope::Pub {
                corr,
                origin,
                channel,
                frame,
            }) => {
                metrics::counter!("gateway_cluster_publications_in_total").increment(1);
                let channel: Arc<str> = Arc::from(channel);
                let owner = owner_of(&channel, self.inboxes.len());
                let msg = ChannelMsg::Publish {
                    channel,
                    frame: Bytes::copy_from_slice(frame),
                    reply: Origin::External(self.answer_to(origin, corr)),
                    self_subscribed: false,
                    local_only: true,
                    seq: 0,
                };
                if self.inboxes[owner].send(msg).is_err() {
                    warn!("owner shard inbox full; dropping a cross-node publication");
                }
            }
            Some(Envelope::SkippingPub {
                corr,
                origin,
                channel,
                socket,
                frame,
            }) => {
                metrics::counter!("gateway_cluster_publications_in_total").increment(1);
                let channel: Arc<str> = Arc::from(channel);
                let owner = owner_of(&channel, self.inboxes.len());
                let msg = ChannelMsg::Publish {
                    channel,
                    frame: Bytes::copy_from_slice(frame),
                    // The owner skips the socket if it is one of this node's.
                    reply: Origin::Skip {
                        socket: Arc::from(socket),
                        then: self.answer_to(origin, corr),
                    },
                    self_subscribed: false,
                    local_only: true,
                    seq: 0,
                };
                if self.inboxes[owner].send(msg).is_err() {
                    warn!("owner shard inbox full; dropping a cross-node publication");
                }
            }
            Some(Envelope::NumberedPub {
                corr,
                origin,
                channel,
                seq,
                epoch,
                frame,
            }) => {
                if origin != self.node_id {
                    metrics::counter!("gateway_cluster_publications_in_total").increment(1);
                }
                let channel: Arc<str> = Arc::from(channel);
                let owner = owner_of(&channel, self.inboxes.len());
                let frame = sequenced(&Bytes::copy_from_slice(frame), seq, epoch);
                let msg = ChannelMsg::Publish {
                    channel,
                    frame,
                    reply: self.numbered_reply(origin, corr),
                    self_subscribed: false,
                    local_only: true,
                    seq,
                };
                if self.inboxes[owner].send(msg).is_err() {
                    warn!(
                        "owner shard inbox full; dropping a numbered publication (kept in history)"
                    );
                }
            }
            Some(Envelope::Disconnect { corr, origin, user }) => {
                self.disconnect_here(user, origin.to_string(), corr)
            }
            Some(Envelope::Ack { corr, conns }) => self.answered(corr, conns),
            None => warn!("malformed cluster message"),
        }
    }

    /// The answer sink of a numbered message from `origin`. This node's own messages are delivered
    /// here like the others' (that keeps every node's order the stream's); their answer needs no
    /// round trip through Redis.
    fn numbered_reply(self: &Arc<Self>, origin: &str, corr: u64) -> Origin {
        if origin == self.node_id {
            let me = self.clone();
            Origin::External(Box::new(move |ack: Ack| me.answered(corr, ack.conns)))
        } else {
            Origin::External(self.answer_to(origin, corr))
        }
    }

    /// A sink that answers `corr` to node `origin` with the connections reached.
    fn answer_to(&self, origin: &str, corr: u64) -> Box<dyn FnOnce(Ack) + Send> {
        let acks = self.acks.clone();
        let origin = origin.to_string();
        Box::new(move |ack: Ack| {
            let _ = acks.send((origin, corr, ack.conns));
        })
    }

    /// Closes `user`'s connections on every shard of this node; the last shard to finish answers.
    fn disconnect_here(&self, user: &str, origin: String, corr: u64) {
        let shards = self.inboxes.len();
        let tally = Arc::new((AtomicU64::new(0), AtomicUsize::new(shards)));
        let user: Arc<str> = Arc::from(user);
        for inbox in self.inboxes.iter() {
            let (tally, user, acks, origin) = (
                tally.clone(),
                user.clone(),
                self.acks.clone(),
                origin.clone(),
            );
            let msg = NodeMsg::Invoke(Box::new(move |_, st, now| {
                let closed = control::disconnect_user(st, &user, CloseReason::Disconnected, now);
                tally.0.fetch_add(closed as u64, Ordering::AcqRel);
                if tally.1.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let _ = acks.send((origin, corr, tally.0.load(Ordering::Acquire)));
                }
            }));
            if inbox.send(msg).is_err() {
                warn!("shard inbox full; a cluster disconnect missed a shard");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Answers the shard of a connection that subscribed to `channel` with `since`.
pub fn send_chan_resumed(
    inboxes: &[Arc<Inbox>],
    channel: Arc<str>,
    req: ResumeRequest,
    outcome: Outcome,
    frames: Vec<Bytes>,
) {
    let msg = HistoryMsg::ChannelResumed {
        conn: req.conn,
        channel,
        outcome,
        frames,
    };
    if inboxes.get(req.shard).is_none_or(|i| i.send(msg).is_err()) {
        warn!(
            "shard inbox full; a channel resume answer is lost and the subscribe waits for its ack"
        );
    }
}

/// Answers a resuming connection's shard.
pub fn send_resumed(
    inboxes: &[Arc<Inbox>],
    req: ResumeRequest,
    outcome: Outcome,
    frames: Vec<Bytes>,
) {
    let msg = HistoryMsg::UserResumed {
        conn: req.conn,
        outcome,
        frames,
    };
    if inboxes.get(req.shard).is_none_or(|i| i.send(msg).is_err()) {
        warn!("shard inbox full; a resume answer is lost and the connection waits for its ready");
    }
}
