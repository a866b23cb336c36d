//! The shards' side of the bridge: owner shards push reports into a bounded lock-free queue and wake
//! the bridge; none of them ever waits on Redis. When Redis is known to be down, a cross-node send is
//! answered right here instead of being queued.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use shards::{cluster::ClusterLink, inbox::Inbox, messages::Origin, route::answer_from_outside};
use tokio::sync::Notify;

use crate::relay;

/// Reports queued between two batches before the bridge falls back to a full refresh.
const QUEUE_CAPACITY: usize = 1 << 20;

/// A report from an owner shard.
pub(super) enum Event {
    /// A user's connection count on this node.
    Presence(Arc<str>, u64),
    /// Channel interest (used by cross-node routing).
    Channel(Arc<str>, bool),
    /// A direct message delivered to `local` connections here, for the other nodes.
    Forward {
        to: Arc<str>,
        frame: Bytes,
        local: u64,
        origin: Origin,
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
            inboxes: std::sync::OnceLock::new(),
        }
    }

    fn push(&self, event: Event) {
        if self.events.push(event).is_err() {
            self.overflowed.store(true, Ordering::Release);
        }
        self.notify.notify_one();
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

    fn channel_interest(&self, channel: &Arc<str>, subscribed: bool) {
        self.push(Event::Channel(channel.clone(), subscribed));
    }

    fn forward_user(&self, to: Arc<str>, frame: Bytes, local: u64, origin: Origin) {
        if !self.redis_up.load(Ordering::Acquire) {
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
}

impl BridgeLink {
    /// Answers a forwarded send without asking the other nodes (Redis is down): see
    /// [`relay::degraded_ack`].
    pub(super) fn unavailable(&self, local: u64, origin: Origin) {
        let ack = relay::degraded_ack(local);
        match self.inboxes.get() {
            Some(inboxes) => answer_from_outside(origin, ack, inboxes),
            None => answer_from_outside(origin, ack, &[]),
        }
    }
}
