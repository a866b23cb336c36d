//! Cross-node direct messages, run by the bridge: envelopes out on the holding nodes' channels, acks
//! back, one total for the sender.
//!
//! A send whose recipient may be on other nodes reaches the bridge after the owner shard delivered it
//! locally. The relay looks the user up in Redis presence and publishes an envelope on
//! `gateway:node:<id>` of every other holding node, carrying the already encoded frame. Each receiving
//! bridge injects it into its own owner shard as a local-only `RouteUser` and publishes an ack with its
//! connection count back on the origin node's channel. The sender's ack carries local + remote
//! connections; it comes back when every node answered or after [`ACK_WAIT`] with what arrived. When
//! Redis cannot be reached the ack says `unavailable` (with the local count) at once.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use shards::{
    ids::owner_of,
    inbox::Inbox,
    messages::{Ack, Origin, ShardMsg},
    route::answer_from_outside,
};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::cluster::{keys, presence::live_fields};

/// Longest a sender's ack waits for the other nodes' acks.
pub const ACK_WAIT: Duration = Duration::from_secs(1);
/// Bound on the presence lookup and publishes of one relay.
const RELAY_TIMEOUT: Duration = Duration::from_secs(2);

/// The ack when the other nodes cannot be asked: a recipient connected here got the message
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

/// Acks waiting for remote nodes, by correlation id.
struct Pending {
    /// Nodes that have not answered.
    remaining: usize,
    /// Connections the answered nodes reached.
    conns: u64,
    /// Completed with the remote total once `remaining` reaches 0.
    done: Option<oneshot::Sender<u64>>,
}

/// The relay of one node, for one Redis connection.
pub struct Relay {
    /// This node's id.
    node_id: String,
    /// Commands (lookups, publishes).
    conn: ConnectionManager,
    /// Presence entry life (fields older are ignored, as the script prunes them).
    presence_ttl: Duration,
    /// Every shard's inbox.
    inboxes: Arc<[Arc<Inbox>]>,
    /// Correlation ids.
    next: AtomicU64,
    /// Sends waiting for remote acks.
    pending: Mutex<HashMap<u64, Pending>>,
}

impl Relay {
    /// A relay on `conn`.
    pub fn new(
        node_id: String,
        conn: ConnectionManager,
        presence_ttl: Duration,
        inboxes: Arc<[Arc<Inbox>]>,
    ) -> Arc<Self> {
        Arc::new(Relay {
            node_id,
            conn,
            presence_ttl,
            inboxes,
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// Forwards a direct message delivered to `local` connections here; answers `origin` with the total.
    pub fn forward(self: &Arc<Self>, to: Arc<str>, frame: Bytes, local: u64, origin: Origin) {
        let relay = self.clone();
        tokio::spawn(async move {
            let ack =
                match tokio::time::timeout(RELAY_TIMEOUT, relay.route(&to, &frame, local)).await {
                    Ok(Ok(total)) => Ack {
                        status: if total > 0 { "delivered" } else { "offline" },
                        conns: total,
                    },
                    Ok(Err(e)) => {
                        warn!(error = %e, "cross-node send failed");
                        degraded_ack(local)
                    }
                    Err(_) => degraded_ack(local),
                };
            answer_from_outside(origin, ack, &relay.inboxes);
        });
    }

    /// Looks `to` up, publishes to the other holders, waits for their acks; returns the total.
    async fn route(&self, to: &str, frame: &Bytes, local: u64) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        let ((secs, micros), fields): ((u64, u64), Vec<(String, String)>) = redis::pipe()
            .cmd("TIME")
            .cmd("HGETALL")
            .arg(keys::presence(to))
            .query_async(&mut conn)
            .await?;
        let now = secs * 1000 + micros / 1000;
        let cutoff = now.saturating_sub(self.presence_ttl.as_millis() as u64);
        let nodes: Vec<String> = live_fields(fields, cutoff)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| *n != self.node_id)
            .collect();
        if nodes.is_empty() {
            return Ok(local);
        }
        let corr = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(
            corr,
            Pending {
                remaining: nodes.len(),
                conns: 0,
                done: Some(tx),
            },
        );
        let envelope = dm_envelope(corr, &self.node_id, to, frame);
        let mut listening = 0;
        for node in &nodes {
            let receivers: i64 = redis::cmd("PUBLISH")
                .arg(keys::node_channel(node))
                .arg(&envelope[..])
                .query_async(&mut conn)
                .await?;
            metrics::counter!("gateway_cluster_messages_out_total").increment(1);
            if receivers > 0 {
                listening += 1;
            }
        }
        if listening < nodes.len() {
            // Nodes with presence but nobody listening (dead, not yet expired) will never ack.
            let finished = {
                let mut pending = self.lock();
                let entry = pending.get_mut(&corr).expect("inserted above");
                entry.remaining -= nodes.len() - listening;
                entry.remaining == 0
            };
            if finished {
                let conns = self.lock().remove(&corr).map_or(0, |p| p.conns);
                return Ok(local + conns);
            }
        }
        let remote = match tokio::time::timeout(ACK_WAIT, rx).await {
            Ok(Ok(conns)) => conns,
            _ => self.lock().remove(&corr).map_or(0, |p| p.conns),
        };
        Ok(local + remote)
    }

    /// Handles a message on this node's channel: a direct message from another node, or an ack.
    fn on_message(&self, payload: &[u8], acks: &mpsc::UnboundedSender<(String, u64, u64)>) {
        match parse_envelope(payload) {
            Some(Envelope::Dm {
                corr,
                origin,
                to,
                frame,
            }) => {
                metrics::counter!("gateway_cluster_messages_in_total").increment(1);
                let acks = acks.clone();
                let origin_node = origin.to_string();
                let sink = Box::new(move |ack: Ack| {
                    let _ = acks.send((origin_node, corr, ack.conns));
                });
                let to: Arc<str> = Arc::from(to);
                let owner = owner_of(&to, self.inboxes.len());
                let msg = ShardMsg::RouteUser {
                    to,
                    frame: Bytes::copy_from_slice(frame),
                    reply: Origin::External(sink),
                    local_only: true,
                };
                if self.inboxes[owner].send(msg).is_err() {
                    warn!("owner shard inbox full; dropping a cross-node message");
                }
            }
            Some(Envelope::Ack { corr, conns }) => {
                let mut pending = self.lock();
                if let Some(entry) = pending.get_mut(&corr) {
                    entry.conns += conns;
                    entry.remaining = entry.remaining.saturating_sub(1);
                    if entry.remaining == 0
                        && let Some(done) = pending.remove(&corr).and_then(|mut p| {
                            let total = p.conns;
                            p.done.take().map(|d| (d, total))
                        })
                    {
                        let _ = done.0.send(done.1);
                    }
                }
            }
            None => warn!("malformed message on the node channel"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Subscribes to this node's channel and serves it until the connection fails; publishes acks for the
/// messages it injected. Returns when the subscription ends (the bridge then reconnects).
pub async fn serve_channel(client: redis::Client, relay: Arc<Relay>) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(keys::node_channel(&relay.node_id)).await?;
    let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<(String, u64, u64)>();
    let mut conn = relay.conn.clone();
    let ack_task = tokio::spawn(async move {
        while let Some((origin, corr, conns)) = acks_rx.recv().await {
            let body = format!("ack\n{corr}\n{conns}");
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(keys::node_channel(&origin))
                .arg(body)
                .query_async(&mut conn)
                .await;
            if let Err(e) = sent {
                warn!(error = %e, "could not publish a cross-node ack");
            }
        }
    });
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        relay.on_message(msg.get_payload_bytes(), &acks_tx);
    }
    ack_task.abort();
    Ok(())
}

/// A parsed node-channel message.
#[derive(Debug, PartialEq, Eq)]
enum Envelope<'a> {
    /// A direct message: correlation id, origin node, recipient, the encoded WebSocket frame.
    Dm {
        corr: u64,
        origin: &'a str,
        to: &'a str,
        frame: &'a [u8],
    },
    /// Connections a remote node reached for `corr`.
    Ack { corr: u64, conns: u64 },
}

/// `dm\n<corr>\n<origin node>\n<user>\n<frame bytes>`; names cannot hold a newline (protocol rule).
fn dm_envelope(corr: u64, origin: &str, to: &str, frame: &[u8]) -> Vec<u8> {
    let mut out = format!("dm\n{corr}\n{origin}\n{to}\n").into_bytes();
    out.extend_from_slice(frame);
    out
}

fn parse_envelope(payload: &[u8]) -> Option<Envelope<'_>> {
    let mut parts = payload.splitn(5, |b| *b == b'\n');
    let kind = parts.next()?;
    let corr: u64 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    match kind {
        b"dm" => {
            let origin = std::str::from_utf8(parts.next()?).ok()?;
            let to = std::str::from_utf8(parts.next()?).ok()?;
            let frame = parts.next()?;
            Some(Envelope::Dm {
                corr,
                origin,
                to,
                frame,
            })
        }
        b"ack" => {
            let conns = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
            Some(Envelope::Ack { corr, conns })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let frame = b"\x81\x05hello\nwith newline";
        let env = dm_envelope(7, "node-a", "bob", frame);
        assert_eq!(
            parse_envelope(&env),
            Some(Envelope::Dm {
                corr: 7,
                origin: "node-a",
                to: "bob",
                frame
            })
        );
        assert_eq!(
            parse_envelope(b"ack\n7\n3"),
            Some(Envelope::Ack { corr: 7, conns: 3 })
        );
        assert_eq!(parse_envelope(b"ack\nx\n3"), None);
        assert_eq!(parse_envelope(b"what\n1\n"), None);
        assert_eq!(parse_envelope(b""), None);
    }
}
