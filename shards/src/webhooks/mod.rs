//! What the data plane tells the backend's webhooks, and where it hands them over.
//!
//! Shards decide the events they can decide alone and pass them to a [`WebhookSink`] (the node's
//! webhook dispatcher, in the `gateway` crate), which never blocks: it queues, batches per target,
//! signs, posts and retries on its own thread. On a single node the channel's owner shard decides
//! occupied/vacated and member added/removed; in cluster mode those are decided cluster-wide by the
//! bridge, and only client events (one per event, wherever it is sent) come from the shards.

pub mod emit;

use std::sync::Arc;

/// One webhook event. Channel and user names are the internal ones (a Pusher app's channel is
/// `\x01{app}\x01{name}`); the dispatcher maps them to their app and external names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A channel's first subscriber (anywhere).
    ChannelOccupied { channel: Arc<str> },
    /// A channel's last subscriber left (anywhere); sent after the grace unless re-occupied.
    ChannelVacated { channel: Arc<str> },
    /// A presence member's first socket (anywhere).
    MemberAdded { channel: Arc<str>, member: Arc<str> },
    /// A presence member's last socket left (anywhere); sent after the grace unless it came back.
    MemberRemoved { channel: Arc<str>, member: Arc<str> },
    /// A client event on a private or presence channel.
    ClientEvent {
        channel: Arc<str>,
        event: Arc<str>,
        /// The event's data as JSON text.
        data: Arc<str>,
        socket_id: Arc<str>,
        /// The sender's member id on a presence channel.
        user_id: Option<Arc<str>>,
    },
    /// A protocol v1 user's first connection (anywhere).
    UserOnline { user: Arc<str> },
    /// A protocol v1 user's last connection closed (anywhere); sent after the grace unless it came
    /// back.
    UserOffline { user: Arc<str> },
}

/// Takes webhook events; implemented by the node's dispatcher. Must not block.
pub trait WebhookSink: Send + Sync {
    /// Queues `hook` for the targets that want it (dropped, and counted, when the queue is full). A
    /// "gone" event waits for the grace, and its return within it cancels both.
    fn emit(&self, hook: Hook);
    /// Queues `hook`, decided with its grace already applied (the cluster's decisions): sent as is.
    fn emit_decided(&self, hook: Hook);
    /// Whether any target wants client events (so shards skip building them when none does).
    fn wants_client_events(&self) -> bool;
}
