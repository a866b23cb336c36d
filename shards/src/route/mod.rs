//! Routing: where a message goes once it has entered the node, and the inbox messages that carry it.
//!
//! Every route tries the local fast path first: if this shard owns the user or channel, the owner step
//! runs in place; if this shard holds the recipients, delivery is a queue push. Only what lives
//! elsewhere crosses an inbox, and then exactly one hop per step.
//!
//! The message dispatch [`handle`] is here, with the helpers every route shares; each concern's routes
//! are in the submodules: `users` (direct messages, resumes), `channels` (subscriptions, publishes)
//! and `presence`.

pub mod channels;
pub mod presence;
pub mod users;

use bytes::Bytes;

use crate::{
    messages::{Ack, ReplyTo, ShardMsg},
    shard::{Shard, ShardState, begin_shutdown},
};
use channels::{
    ack_subscribed, chan_sub_at_owner, chan_unsub_at_owner, deliver_channel_local,
    publish_at_owner, resume_channel_at_owner,
};
use presence::{channel_presence_at_owner, presence_answer};
use users::{answer, deliver_to_holders, deliver_user_local, resume_at_owner, route_user_at_owner};

pub use channels::{publish, subscribed, unsubscribed};
pub(crate) use presence::report_presence;
pub use presence::{presence_channel, presence_users};
pub use users::{answer_from_outside, conn_gone, resume_user, send_to_user, user_connected};

/// Handles one message from the inbox.
pub fn handle(shard: &Shard, st: &mut ShardState, msg: ShardMsg, now: u64) {
    match msg {
        ShardMsg::DirAdd {
            user,
            shard: holder,
            admit,
        } => {
            st.users.directory.add(user.clone(), holder);
            if st.users.directory.connections(&user) == 1 {
                crate::webhooks::online(shard, &user, true);
            }
            match admit {
                // Reports the presence change itself (with the confirmation, in cluster mode).
                Some(admit) => crate::admit::at_owner(shard, st, &user, holder, admit, now),
                None => report_presence(shard, st, &user),
            }
        }
        ShardMsg::Admitted { conn, verdict } => {
            crate::admit::on_verdict(shard, st, conn, verdict, now)
        }
        ShardMsg::DirRemove {
            user,
            shard: holder,
        } => {
            st.users.directory.remove(&user, holder);
            if st.users.directory.connections(&user) == 0 {
                crate::webhooks::online(shard, &user, false);
            }
            report_presence(shard, st, &user);
        }
        ShardMsg::RouteUser {
            to,
            frame,
            reply,
            local_only: false,
            ..
        } => route_user_at_owner(shard, st, to, frame, reply, now),
        ShardMsg::RouteUser {
            to,
            frame,
            reply,
            local_only: true,
            seq,
        } => {
            // From the bridge: numbered (or not) already; this node's connections only.
            let conns = deliver_to_holders(shard, st, &to, &frame, seq, now);
            let status = if conns > 0 { "delivered" } else { "offline" };
            answer(shard, st, reply, Ack { status, conns }, now);
        }
        ShardMsg::DeliverUser { to, frame, seq } => {
            deliver_user_local(shard, st, &to, &frame, seq, now)
        }
        ShardMsg::ResumeUser { user, req } => resume_at_owner(shard, st, user, req, now),
        ShardMsg::Resumed {
            conn,
            outcome,
            frames,
        } => crate::history::resume::finish(shard, st, conn, outcome, frames, now),
        ShardMsg::ChanSub {
            channel,
            user,
            info,
            shard: holder,
            ack,
            since,
        } => chan_sub_at_owner(shard, st, channel, (user, info), holder, (ack, since), now),
        ShardMsg::ChanResumed {
            conn,
            channel,
            outcome,
            frames,
        } => {
            crate::history::resume::finish_channel(shard, st, conn, &channel, outcome, frames, now)
        }
        ShardMsg::ChanUnsub {
            channel,
            user,
            shard: holder,
        } => chan_unsub_at_owner(shard, st, channel, user, holder, now),
        ShardMsg::ChanReady { channel } => {
            let (acks, resumes) = match st.channels.index.get_mut(&channel) {
                Some(entry) => entry.release(),
                None => Default::default(),
            };
            ack_subscribed(shard, st, &channel, acks, now);
            for req in resumes {
                resume_channel_at_owner(shard, st, channel.clone(), req, now);
            }
        }
        ShardMsg::RoutePublish {
            channel,
            frame,
            reply,
            self_subscribed,
            local_only,
            seq,
        } => publish_at_owner(
            shard,
            st,
            channel,
            frame,
            reply,
            (self_subscribed, local_only, seq),
            now,
        ),
        ShardMsg::DeliverChannel {
            channel,
            frame,
            exclude,
            seq,
        } => deliver_channel_local(shard, st, &channel, &frame, (exclude, seq), now),
        ShardMsg::ToConn { conn, frame } => {
            st.conns.enqueue(conn, frame, now);
        }
        ShardMsg::PresenceQuery { query, from, users } => {
            let online = users
                .into_iter()
                .map(|(i, u)| (i, st.users.directory.is_online(&u)))
                .collect();
            st.mesh
                .send(from, ShardMsg::PresenceAnswer { query, online });
        }
        ShardMsg::PresenceAnswer { query, online } => {
            presence_answer(shard, st, query, online, now)
        }
        ShardMsg::ChannelPresence { channel, reply } => {
            channel_presence_at_owner(shard, st, &channel, reply, now)
        }
        ShardMsg::Invoke(f) => f(shard, st, now),
        ShardMsg::Shutdown => begin_shutdown(shard, st, now),
        ShardMsg::StopAccepting => shard.stop_accepting.fire(),
        ShardMsg::Drain(plan) => crate::drain::start(shard, st, plan, now),
        ShardMsg::Probe(_) => {}
    }
}

/// Sends `msg` to `owner`, or runs it here when this shard is the owner.
///
/// Running in place must not overtake what other shards already sent us: a subscription or identify
/// acked to its client sits in our inbox before any request that client's peers make because of it.
/// So the inbox is drained first; the local fast path keeps the causal order the inbox path has.
fn to_owner(shard: &Shard, st: &mut ShardState, owner: usize, msg: ShardMsg, now: u64) {
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
fn to_shard(shard: &Shard, st: &mut ShardState, target: usize, msg: ShardMsg, now: u64) {
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
