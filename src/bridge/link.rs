//! The shards' side of the bridge: owner shards push reports into a bounded lock-free queue and wake
//! the bridge; none of them ever waits on Redis. When Redis is known to be down, a cross-node send or
//! publish is answered right here instead of being queued, and presence queries are handed back.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use shards::{
    admit::{ClusterState, ReadyRequest, Verdict},
    cluster::{ClusterLink, PresenceQuery},
    history::ResumeRequest,
    inbox::Inbox,
    messages::{Origin, UserMsg},
    route::answer_from_outside,
};
use tokio::sync::{Notify, oneshot};

use crate::relay;

/// Reports queued between two batches before the bridge falls back to a full refresh.
const QUEUE_CAPACITY: usize = 1 << 20;

/// A report or request for the bridge.
pub(super) enum Event {
    /// A user's connection count on this node.
    Presence(Arc<str>, u64),
    /// Channel interest: the node's first subscriber came (`true`) or its last left.
    Channel(Arc<str>, bool),
    /// Channel membership of a user on this node: (channel, user, member).
    Member(Arc<str>, Arc<str>, bool),
    /// A Pusher presence member's first join (with its info) or last leave on this node, for the
    /// cluster-wide decision (see [`super::pusher`]).
    PresenceMember(super::pusher::MemberChange),
    /// A Pusher channel query to complete with the other nodes.
    PusherQuery(shards::pusher::query::Query),
    /// A Pusher channel's subscribed sockets on this node.
    PusherSubscriptions(Arc<str>, u64),
    /// A direct message delivered to `local` connections here, for the other nodes.
    Forward {
        to: Arc<str>,
        frame: Bytes,
        local: u64,
        origin: Origin,
    },
    /// A publication delivered to `local` subscribers here, for the other nodes.
    Publish {
        channel: Arc<str>,
        frame: Bytes,
        local: u64,
        origin: Origin,
    },
    /// A direct message to number in Redis and deliver everywhere (history on).
    Sequence {
        to: Arc<str>,
        frame: Bytes,
        /// This node holds `to`.
        here: bool,
        origin: Origin,
    },
    /// A publication to a channel with history, to number in Redis and publish everywhere.
    SequencePublish {
        channel: Arc<str>,
        frame: Bytes,
        origin: Origin,
    },
    /// A connection subscribed to `channel` with `since` (this node listens to the channel).
    ResumeChannel {
        channel: Arc<str>,
        req: ResumeRequest,
    },
    /// A connection of `user` resumes its stream (queued after the user's presence change).
    Resume { user: Arc<str>, req: ResumeRequest },
    /// A user's connection count on this node, and a connection that waits for it to be in Redis
    /// before its `ready`.
    Confirm(Arc<str>, u64, ReadyRequest),
    /// A client's presence query to complete with the other nodes.
    Query(PresenceQuery),
    /// The HTTP API asks which other nodes hold `user` (None: Redis failed).
    Lookup {
        user: Arc<str>,
        reply: oneshot::Sender<Option<Vec<(String, u32)>>>,
    },
    /// The HTTP API closes `user`'s connections on the other nodes (None: Redis failed).
    Disconnect {
        user: Arc<str>,
        reply: oneshot::Sender<Option<u64>>,
    },
}

/// The shards' side of the bridge: a bounded MPSC queue and a wake-up.
pub struct BridgeLink {
    /// Reports waiting for the bridge.
    pub(super) events: ArrayQueue<Event>,
    /// Wakes the bridge's batching task.
    pub(super) notify: Notify,
    /// Set when a report found the queue full: the bridge then re-reads every shard's users.
    pub(super) overflowed: AtomicBool,
    /// True while the bridge's last Redis operation succeeded (read by shards to fail fast).
    pub(super) redis_up: AtomicBool,
    /// Set for good once the first Redis session is up and this node's state restored.
    pub(super) reached_once: AtomicBool,
    /// Every shard's inbox, set once the shards run: where `unavailable` acks go when Redis is down.
    pub(super) inboxes: std::sync::OnceLock<Arc<[Arc<Inbox>]>>,
}

impl BridgeLink {
    /// An empty link.
    pub fn new() -> Self {
        BridgeLink {
            events: ArrayQueue::new(QUEUE_CAPACITY),
            notify: Notify::new(),
            overflowed: AtomicBool::new(false),
            redis_up: AtomicBool::new(false),
            reached_once: AtomicBool::new(false),
            inboxes: std::sync::OnceLock::new(),
        }
    }

    fn push(&self, event: Event) {
        if self.events.push(event).is_err() {
            self.overflowed.store(true, Ordering::Release);
        }
        self.notify.notify_one();
    }

    fn up(&self) -> bool {
        self.redis_up.load(Ordering::Acquire)
    }

    /// The other nodes holding `user`, with their connection counts; `None` when Redis is down or
    /// failed (the caller then answers for this node alone).
    pub async fn remote_holders(&self, user: &str) -> Option<Vec<(String, u32)>> {
        if !self.up() {
            return None;
        }
        let (reply, rx) = oneshot::channel();
        self.push(Event::Lookup {
            user: Arc::from(user),
            reply,
        });
        rx.await.ok().flatten()
    }

    /// Closes `user`'s connections on the other nodes; how many, or `None` when Redis is down or failed.
    pub async fn disconnect_remote(&self, user: &str) -> Option<u64> {
        if !self.up() {
            return None;
        }
        let (reply, rx) = oneshot::channel();
        self.push(Event::Disconnect {
            user: Arc::from(user),
            reply,
        });
        rx.await.ok().flatten()
    }
}

impl Default for BridgeLink {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterLink for BridgeLink {
    fn presence_changed(&self, user: &Arc<str>, conns: u64) {
        self.push(Event::Presence(user.clone(), conns));
    }

    fn channel_interest(&self, channel: &Arc<str>, subscribed: bool) -> bool {
        self.push(Event::Channel(channel.clone(), subscribed));
        subscribed && self.up()
    }

    fn channel_member(&self, channel: &Arc<str>, user: &Arc<str>, member: bool) {
        self.push(Event::Member(channel.clone(), user.clone(), member));
    }

    fn presence_member(
        &self,
        channel: &Arc<str>,
        member: &Arc<str>,
        info: Option<Arc<str>>,
        joiner: Option<shards::messages::ReplyTo>,
    ) {
        self.push(Event::PresenceMember(super::pusher::MemberChange {
            channel: channel.clone(),
            member: member.clone(),
            info,
            joiner,
        }));
    }

    fn pusher_query(&self, query: shards::pusher::query::Query) {
        self.push(Event::PusherQuery(query));
    }

    fn pusher_subscriptions(&self, channel: &Arc<str>, count: u64) {
        self.push(Event::PusherSubscriptions(channel.clone(), count));
    }

    fn disconnect_remote(&self, user: Arc<str>) {
        if self.up() {
            // Nobody waits for the count: the receiver is dropped.
            let (reply, _) = oneshot::channel();
            self.push(Event::Disconnect { user, reply });
        }
    }

    fn forward_user(&self, to: Arc<str>, frame: Bytes, local: u64, origin: Origin) {
        if !self.up() {
            // Fail fast: no waiting on a Redis that is known to be down.
            self.unavailable(local, origin);
            return;
        }
        self.push(Event::Forward {
            to,
            frame,
            local,
            origin,
        });
    }

    fn forward_publish(&self, channel: Arc<str>, frame: Bytes, local: u64, origin: Origin) {
        if !self.up() {
            self.unpublished(local, origin);
            return;
        }
        self.push(Event::Publish {
            channel,
            frame,
            local,
            origin,
        });
    }

    fn sequence_user(
        &self,
        to: Arc<str>,
        frame: Bytes,
        here: bool,
        origin: Origin,
    ) -> Result<(), (Bytes, Origin)> {
        if !self.up() {
            return Err((frame, origin));
        }
        self.push(Event::Sequence {
            to,
            frame,
            here,
            origin,
        });
        Ok(())
    }

    fn resume_user(&self, user: Arc<str>, req: ResumeRequest) -> Result<(), ResumeRequest> {
        if !self.up() {
            return Err(req);
        }
        self.push(Event::Resume { user, req });
        Ok(())
    }

    fn sequence_publish(
        &self,
        channel: Arc<str>,
        frame: Bytes,
        origin: Origin,
    ) -> Result<(), (Bytes, Origin)> {
        if !self.up() {
            return Err((frame, origin));
        }
        self.push(Event::SequencePublish {
            channel,
            frame,
            origin,
        });
        Ok(())
    }

    fn resume_channel(&self, channel: Arc<str>, req: ResumeRequest) -> Result<(), ResumeRequest> {
        if !self.up() {
            return Err(req);
        }
        self.push(Event::ResumeChannel { channel, req });
        Ok(())
    }

    fn confirm_presence(
        &self,
        user: &Arc<str>,
        conns: u64,
        req: ReadyRequest,
    ) -> Result<(), ReadyRequest> {
        if !self.up() {
            self.push(Event::Presence(user.clone(), conns));
            return Err(req);
        }
        self.push(Event::Confirm(user.clone(), conns, req));
        Ok(())
    }

    fn query_presence(&self, query: PresenceQuery) -> Result<(), PresenceQuery> {
        if !self.up() {
            return Err(query);
        }
        self.push(Event::Query(query));
        Ok(())
    }
}

impl BridgeLink {
    /// Answers a forwarded send without asking the other nodes (Redis is down): see
    /// [`relay::degraded_ack`].
    pub(super) fn unavailable(&self, local: u64, origin: Origin) {
        self.answer(origin, relay::degraded_ack(local));
    }

    /// Answers a forwarded publish without the other nodes: see [`relay::degraded_publish_ack`].
    pub(super) fn unpublished(&self, local: u64, origin: Origin) {
        self.answer(origin, relay::degraded_publish_ack(local));
    }

    /// Answers waiting connections: `ready` with their cluster state.
    pub(super) fn admitted(&self, reqs: Vec<ReadyRequest>, state: ClusterState) {
        let Some(inboxes) = self.inboxes.get() else {
            return;
        };
        for req in reqs {
            let msg = UserMsg::Admitted {
                conn: req.conn,
                verdict: Verdict::Ready {
                    cluster: Some(state),
                },
            };
            if inboxes[req.shard].send(msg).is_err() {
                // The connection answers itself degraded once its wait runs out.
                tracing::warn!("shard inbox full; a ready waits for its timeout");
            }
        }
    }

    fn answer(&self, origin: Origin, ack: shards::messages::Ack) {
        match self.inboxes.get() {
            Some(inboxes) => answer_from_outside(origin, ack, inboxes),
            None => answer_from_outside(origin, ack, &[]),
        }
    }
}
