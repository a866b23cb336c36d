//! Routing: where a message goes once it has entered the node, and the inbox messages that carry it.
//!
//! Every route tries the local fast path first: if this shard owns the user or channel, the owner step
//! runs in place; if this shard holds the recipients, delivery is a queue push. Only what lives
//! elsewhere crosses an inbox, and then exactly one hop per step.
//!
//! The message dispatch [`handle`] is here, with the helpers every route shares. Each concern has its
//! own state, its own family of messages (`crate::messages`) and the one handler that routes them, in
//! its submodule: [`users`] (the directory, direct messages, resumes), [`channels`] (subscriptions,
//! publishes) and [`presence`]; the answers to resumes are handled by `crate::history::resume`, the
//! node's control messages by `crate::shard`.

pub mod channels;
pub mod presence;
pub mod users;

use bytes::Bytes;

use crate::{
    messages::{ReplyTo, ShardMsg},
    shard::{Shard, ShardState},
};

pub use channels::{publish, subscribed, unsubscribed};
pub(crate) use presence::report_presence;
pub use presence::{presence_channel, presence_users};
pub use users::{answer_from_outside, conn_gone, resume_user, send_to_user, user_connected};

/// Handles one message from the inbox: each family goes to its concern's handler.
pub fn handle(shard: &Shard, st: &mut ShardState, msg: ShardMsg, now: u64) {
    match msg {
        ShardMsg::User(msg) => users::handle(shard, st, msg, now),
        ShardMsg::Channel(msg) => channels::handle(shard, st, msg, now),
        ShardMsg::Presence(msg) => presence::handle(shard, st, msg, now),
        ShardMsg::History(msg) => crate::history::resume::handle(shard, st, msg, now),
        ShardMsg::ToConn { conn, frame } => {
            st.conns.enqueue(conn, frame, now);
        }
        ShardMsg::Node(msg) => crate::shard::node::handle(shard, st, msg, now),
    }
}

/// Sends `msg` to `owner`, or runs it here when this shard is the owner.
///
/// Running in place must not overtake what other shards already sent us: a subscription or identify
/// acked to its client sits in our inbox before any request that client's peers make because of it.
/// So the inbox is drained first; the local fast path keeps the causal order the inbox path has.
fn to_owner(shard: &Shard, st: &mut ShardState, owner: usize, msg: impl Into<ShardMsg>, now: u64) {
    let msg = msg.into();
    if owner == shard.id {
        catch_up(shard, st, now);
        handle(shard, st, msg, now);
    } else {
        st.mesh.send(owner, msg);
    }
}

/// Applies every message already in this shard's inbox (see [`to_owner`]).
fn catch_up(shard: &Shard, st: &mut ShardState, now: u64) {
    while let Some(msg) = shard.inbox.pop() {
        handle(shard, st, msg, now);
    }
}

/// Handles `msg` on shard `target`: here in place, or through its inbox.
fn to_shard(shard: &Shard, st: &mut ShardState, target: usize, msg: impl Into<ShardMsg>, now: u64) {
    let msg = msg.into();
    if target == shard.id {
        handle(shard, st, msg, now);
    } else {
        st.mesh.send(target, msg);
    }
}

/// Queues a reply frame to the connection in `reply`, wherever it is.
pub fn reply(shard: &Shard, st: &mut ShardState, reply: &ReplyTo, frame: Bytes, now: u64) {
    if reply.shard == shard.id {
        st.conns.enqueue(reply.conn, frame, now);
    } else {
        st.mesh.send(
            reply.shard,
            ShardMsg::ToConn {
                conn: reply.conn,
                frame,
            },
        );
    }
}
