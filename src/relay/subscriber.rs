//! The bridge's listening connection: this node's own channel, and the topics of the channels it has
//! subscribers of.
//!
//! One RESP3 connection carries every subscription, so subscribing and unsubscribing are ordinary
//! commands on a connection that also delivers the messages as push frames (RESP2 would need a
//! connection in subscriber mode plus a separate sink). Channel topics use sharded pub/sub
//! (SSUBSCRIBE/SPUBLISH, Redis 7+) when the server has it: on a Redis Cluster a publication then goes
//! only to the shard owning the topic's slot instead of being broadcast over the cluster bus. Each
//! SSUBSCRIBE names one topic (in a cluster, topics of one command must share a slot), pipelined
//! [`BATCH`] per round trip. On a Redis Cluster the listening connection is the crate's cluster
//! connection ([`crate::bridge::cluster_target`]): each SSUBSCRIBE goes to its slot's master, a batch
//! of them concurrently.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use redis::{
    AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, RedisResult,
    aio::MultiplexedConnection, cluster_async::ClusterConnection,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::{
    bridge::{cluster_target::ClusterUrl, target::Endpoint},
    cluster::{keys, presence::BATCH},
};

/// How long after a topic's slot moved it is subscribed again: the cluster's nodes learn a slot's
/// new master from each other over a second or so, and a slot map read sooner may still name the
/// old one.
pub const MOVED_SETTLE: Duration = Duration::from_secs(2);

/// Most connections open at once for moved topics. A resharding needs about one per
/// [`MOVED_SETTLE`] it lasts; past this bound the bridge starts a new session instead, which places
/// every topic on one connection again.
const MAX_EXTRA: usize = 16;

/// The listening connection, and whether it uses sharded pub/sub for channel topics.
pub struct Subscriber {
    conn: Listening,
    sharded: bool,
    /// Topics this node unsubscribed from whose confirmation has not come back yet (how many), to
    /// tell them from subscriptions a server ended by itself.
    unsubscribing: HashMap<Arc<str>, u32>,
    /// On a Redis Cluster: the topics whose slot moved, and where they were placed again.
    moved: Moved,
}

/// Topics whose slot moved to another master (a failover, a resharding): the old master ended their
/// subscriptions, and the crate's connection forgets a subscription the server ended. They are
/// subscribed again [`MOVED_SETTLE`] later on a fresh connection, whose slot map is read then; the
/// rest of the session (this node's channel, the other topics, the writes) goes on meanwhile.
#[derive(Default)]
struct Moved {
    /// Topics waiting to be placed again, and when.
    pending: Vec<Arc<str>>,
    due: Option<Instant>,
    /// The connections opened for moved topics (`None` once none of its topics is left on it).
    extra: Vec<Option<ClusterConnection>>,
    /// Which of them holds a topic placed again.
    held_by: HashMap<Arc<str>, usize>,
}

/// Who ended a subscription to a channel's topic.
#[derive(Debug, PartialEq, Eq)]
pub enum TopicEnded {
    /// This node (the confirmation of its own unsubscribe).
    Here,
    /// The server: on a Redis Cluster, the topic's slot moved to another master (a failover, a
    /// resharding), which ends the shard channel subscriptions held on the old one.
    Moved,
    /// The server, on a single Redis.
    Server,
}

/// One server's connection, or a cluster's.
enum Listening {
    One(MultiplexedConnection),
    Cluster {
        conn: ClusterConnection,
        /// What opens another listening connection to the same cluster, its pushes in the same queue.
        url: ClusterUrl,
        pushes: UnboundedSender<PushInfo>,
        timeout: Duration,
    },
}

/// Whether the server has sharded pub/sub (`COMMAND INFO SPUBLISH` is nil on servers before 7.0).
pub async fn has_sharded_pubsub(conn: &mut impl redis::aio::ConnectionLike) -> bool {
    let info: RedisResult<Vec<redis::Value>> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("SPUBLISH")
        .query_async(conn)
        .await;
    matches!(info.as_deref(), Ok([v]) if *v != redis::Value::Nil)
}

impl Subscriber {
    /// Connects (RESP3) and subscribes to `node_channel`; returns the connection and its push frames.
    pub async fn connect(
        endpoint: &Endpoint,
        node_channel: &str,
        sharded: bool,
        timeout: std::time::Duration,
    ) -> RedisResult<(Subscriber, UnboundedReceiver<PushInfo>)> {
        let client = match endpoint {
            Endpoint::One(client) => client,
            Endpoint::Cluster(url) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let conn = url.listen(Some(node_channel), tx.clone(), timeout).await?;
                let conn = Listening::Cluster {
                    conn,
                    url: url.clone(),
                    pushes: tx,
                    timeout,
                };
                return Ok((Subscriber::new(conn, sharded), rx));
            }
        };
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_push_sender(tx)
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        conn.subscribe(node_channel).await?;
        let conn = Listening::One(conn);
        Ok((Subscriber::new(conn, sharded), rx))
    }

    fn new(conn: Listening, sharded: bool) -> Subscriber {
        Subscriber {
            conn,
            sharded,
            unsubscribing: HashMap::new(),
            moved: Moved::default(),
        }
    }

    /// Who ended the subscription to `channel`'s topic that Redis just reported ended.
    pub fn ended(&mut self, channel: &Arc<str>) -> TopicEnded {
        if let Some(pending) = self.unsubscribing.get_mut(channel) {
            *pending -= 1;
            if *pending == 0 {
                self.unsubscribing.remove(channel);
            }
            return TopicEnded::Here;
        }
        match self.conn {
            Listening::Cluster { .. } => {
                self.release(channel);
                let moved = &mut self.moved;
                if !moved.pending.contains(channel) {
                    moved.pending.push(channel.clone());
                }
                moved.due.get_or_insert(Instant::now() + MOVED_SETTLE);
                TopicEnded::Moved
            }
            Listening::One(_) => TopicEnded::Server,
        }
    }

    /// When moved topics are due to be subscribed again, if any wait.
    pub fn moved_due(&self) -> Option<Instant> {
        self.moved.due
    }

    /// Subscribes the moved topics that are still `wanted` again, on a new connection to the
    /// cluster (so on a slot map read now); returns how many.
    pub async fn place_moved(&mut self, wanted: impl Fn(&Arc<str>) -> bool) -> RedisResult<usize> {
        self.moved.due = None;
        let topics: Vec<Arc<str>> = std::mem::take(&mut self.moved.pending)
            .into_iter()
            .filter(|t| wanted(t))
            .collect();
        let Listening::Cluster {
            url,
            pushes,
            timeout,
            ..
        } = &self.conn
        else {
            return Ok(0);
        };
        if topics.is_empty() {
            return Ok(0);
        }
        if self.moved.extra.iter().flatten().count() >= MAX_EXTRA {
            return Err(redis::RedisError::from(std::io::Error::other(
                "too many connections for moved channel topics; starting a new session",
            )));
        }
        let conn = url.listen(None, pushes.clone(), *timeout).await?;
        for chunk in topics.chunks(BATCH) {
            cluster_command(&conn, "SSUBSCRIBE", chunk).await?;
        }
        let extra = &mut self.moved.extra;
        let slot = extra
            .iter()
            .position(Option::is_none)
            .unwrap_or(extra.len());
        if slot == extra.len() {
            extra.push(None);
        }
        extra[slot] = Some(conn);
        for topic in &topics {
            self.moved.held_by.insert(topic.clone(), slot);
        }
        Ok(topics.len())
    }

    /// `channel`'s topic is no longer on the connection it was placed on again (if it was); that
    /// connection closes once it holds no topic.
    fn release(&mut self, channel: &Arc<str>) {
        let Some(slot) = self.moved.held_by.remove(channel) else {
            return;
        };
        if !self.moved.held_by.values().any(|s| *s == slot) {
            self.moved.extra[slot] = None;
        }
    }

    /// True when channel topics use sharded pub/sub.
    pub fn sharded(&self) -> bool {
        self.sharded
    }

    /// Starts listening to the topics of `add` and stops listening to those of `remove`.
    pub async fn sync(&mut self, add: &[Arc<str>], remove: &[Arc<str>]) -> RedisResult<()> {
        for chunk in add.chunks(BATCH) {
            self.command(
                if self.sharded {
                    "SSUBSCRIBE"
                } else {
                    "SUBSCRIBE"
                },
                chunk,
            )
            .await?;
        }
        // A moved topic waiting to be placed again is subscribed nowhere; one placed again is
        // unsubscribed on the connection that holds it.
        let mut remove: Vec<Arc<str>> = remove.to_vec();
        remove.retain(|c| match self.moved.pending.iter().position(|p| p == c) {
            Some(at) => {
                self.moved.pending.swap_remove(at);
                false
            }
            None => true,
        });
        if self.sharded {
            for channel in &remove {
                *self.unsubscribing.entry(channel.clone()).or_default() += 1;
            }
        }
        let (elsewhere, remove): (Vec<_>, Vec<_>) = remove
            .into_iter()
            .partition(|c| self.moved.held_by.contains_key(c));
        for channel in elsewhere {
            let slot = self.moved.held_by[&channel];
            if let Some(conn) = &self.moved.extra[slot] {
                cluster_command(conn, "SUNSUBSCRIBE", std::slice::from_ref(&channel)).await?;
            }
            self.release(&channel);
        }
        for chunk in remove.chunks(BATCH) {
            self.command(
                if self.sharded {
                    "SUNSUBSCRIBE"
                } else {
                    "UNSUBSCRIBE"
                },
                chunk,
            )
            .await?;
        }
        Ok(())
    }

    /// One subscribe-like command per topic, pipelined: each is answered by exactly one confirmation,
    /// which the connection takes as that command's reply.
    async fn command(&mut self, name: &str, channels: &[Arc<str>]) -> RedisResult<()> {
        match &mut self.conn {
            Listening::One(conn) => {
                let mut pipe = redis::pipe();
                for channel in channels {
                    pipe.cmd(name).arg(keys::channel(channel)).ignore();
                }
                pipe.query_async::<()>(conn).await
            }
            // Through the connection's own methods: it tracks them, to subscribe again after a
            // reconnect or a topology change.
            Listening::Cluster { conn, .. } => cluster_command(conn, name, channels).await,
        }
    }
}

/// One subscribe-like command per topic on a cluster connection, concurrently (each goes to its
/// slot's master).
async fn cluster_command(
    conn: &ClusterConnection,
    name: &str,
    channels: &[Arc<str>],
) -> RedisResult<()> {
    let calls = channels.iter().map(|channel| {
        let mut conn = conn.clone();
        let topic = keys::channel(channel);
        async move {
            match name {
                "SSUBSCRIBE" => conn.ssubscribe(topic).await,
                "SUNSUBSCRIBE" => conn.sunsubscribe(topic).await,
                "SUBSCRIBE" => conn.subscribe(topic).await,
                _ => conn.unsubscribe(topic).await,
            }
        }
    });
    futures_util::future::try_join_all(calls).await.map(|_| ())
}

/// What a push frame means to the relay.
pub enum Push {
    /// A message on a subscribed channel or topic: its payload.
    Message(Vec<u8>),
    /// The connection is gone.
    Disconnected,
    /// A channel topic is no longer listened to: this node unsubscribed, or (Redis Cluster) its slot
    /// moved to another master, which ends the shard channel subscriptions held on the old one.
    Unsubscribed(Vec<u8>),
    /// A confirmation or anything else: nothing to do.
    Other,
}

/// Classifies a push frame.
pub fn classify(push: PushInfo) -> Push {
    match push.kind {
        PushKind::Message | PushKind::SMessage => match redis::Msg::from_push_info(push) {
            Some(msg) => Push::Message(msg.get_payload_bytes().to_vec()),
            None => Push::Other,
        },
        PushKind::Disconnection => Push::Disconnected,
        PushKind::SUnsubscribe => match push.data.first() {
            Some(redis::Value::BulkString(topic)) => Push::Unsubscribed(topic.clone()),
            _ => Push::Other,
        },
        _ => Push::Other,
    }
}
