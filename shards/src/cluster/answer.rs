//! A presence query's answer from what is known: this node's alone (Redis down, or a single node), or
//! completed by the bridge with the other nodes'.

use bytes::Bytes;

use super::PresenceQuery;
use crate::{messages::ReplyTo, protocol::encode};

impl PresenceQuery {
    /// The answer as a message for the asking connection's shard, and that shard. A presence
    /// channel's `subscription_succeeded` also starts the socket's live deliveries there
    /// ([`crate::pusher::presence::succeeded_at`]).
    pub fn answer_msg(self) -> (usize, crate::messages::ShardMsg) {
        let channel = match &self {
            PresenceQuery::PusherMembers { channel, .. } => Some(channel.clone()),
            _ => None,
        };
        let (frame, reply) = self.local_answer();
        let msg = match channel {
            Some(channel) => crate::pusher::presence::succeeded_at(reply.conn, channel, frame),
            None => crate::messages::ShardMsg::ToConn {
                conn: reply.conn,
                frame,
            },
        };
        (reply.shard, msg)
    }

    /// The reply frame from this node's knowledge alone, and where it goes.
    pub fn local_answer(self) -> (Bytes, ReplyTo) {
        match self {
            PresenceQuery::Users { users, reply } => (
                encode::presence_users(reply.id.as_deref(), users.iter().map(|(u, o)| (&**u, *o))),
                reply,
            ),
            PresenceQuery::Channel {
                channel,
                users,
                reply,
            } => {
                let mut names: Vec<&str> = users.iter().map(|u| &**u).collect();
                names.sort_unstable();
                names.dedup();
                (
                    encode::presence_channel(reply.id.as_deref(), &channel, &names),
                    reply,
                )
            }
            PresenceQuery::PusherMembers {
                channel,
                mut members,
                reply,
            } => {
                members.sort_unstable();
                members.dedup_by(|a, b| a.0 == b.0);
                let refs: Vec<_> = members.iter().map(|(m, i)| (m, i)).collect();
                (crate::pusher::presence::succeeded(&channel, &refs), reply)
            }
        }
    }
}
