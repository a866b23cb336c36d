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

use std::{collections::HashMap, sync::Arc};

use redis::{
    AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, RedisResult,
    aio::MultiplexedConnection, cluster_async::ClusterConnection,
};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{
    bridge::target::Endpoint,
    cluster::{keys, presence::BATCH},
};

/// The listening connection, and whether it uses sharded pub/sub for channel topics.
pub struct Subscriber {
    conn: Listening,
    sharded: bool,
    /// Topics this node unsubscribed from whose confirmation has not come back yet (how many), to
    /// tell them from subscriptions a server ended by itself.
    unsubscribing: HashMap<Arc<str>, u32>,
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
    Cluster(ClusterConnection),
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
                let (conn, rx) = url.listen(node_channel, timeout).await?;
                let conn = Listening::Cluster(conn);
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
            Listening::Cluster(_) => TopicEnded::Moved,
            Listening::One(_) => TopicEnded::Server,
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
        if self.sharded {
            for channel in remove {
                *self.unsubscribing.entry(channel.clone()).or_default() += 1;
            }
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
            // reconnect or a slot's move.
            Listening::Cluster(conn) => {
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
        }
    }
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
