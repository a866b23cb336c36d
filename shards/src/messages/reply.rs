//! Where the answer to a request goes: the asking connection, or whoever asked from outside the shards.
//! Shared by the messages, the routing tables that keep waiting acks, and the cluster link.

use std::sync::Arc;

use crate::ids::ConnId;

/// Where a reply goes: a connection on a shard, with the request's `id`.
#[derive(Clone, Debug)]
pub struct ReplyTo {
    /// Shard holding the requesting connection.
    pub shard: usize,
    /// The requesting connection.
    pub conn: ConnId,
    /// The request's `id`, echoed in the reply.
    pub id: Option<Arc<str>>,
}

/// What the owner shard reports back once a send or publish has been routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// `delivered`, `offline` (send) or `published` (publish).
    pub status: &'static str,
    /// Connections the message was routed to.
    pub conns: u64,
}

/// Receives an [`Ack`] on the owner shard's thread; it must not block (send it on a channel).
pub type AckSink = Box<dyn FnOnce(Ack) + Send>;

/// Who asked for a send or publish, and so where its ack goes.
pub enum Origin {
    /// A client connection: it gets an ack frame, and a publish skips it.
    Conn(ReplyTo),
    /// The control plane (HTTP API, cluster bridge): it gets the [`Ack`] values.
    External(AckSink),
    /// A connection of this node whose publication is acked to no one but skips it all the same (a
    /// Pusher client event or member event).
    Silent(ReplyTo),
    /// A publication that skips the Pusher socket `socket` wherever in the cluster it is (an HTTP
    /// trigger's `socket_id`); `then` gets the ack.
    Skip { socket: Arc<str>, then: AckSink },
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Conn(r) => f.debug_tuple("Conn").field(r).finish(),
            Origin::External(_) => f.write_str("External"),
            Origin::Silent(r) => f.debug_tuple("Silent").field(r).finish(),
            Origin::Skip { socket, .. } => f.debug_tuple("Skip").field(socket).finish(),
        }
    }
}
