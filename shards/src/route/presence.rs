//! Presence routing: who is online, asked of the users' or the channel's owners (and through the
//! cluster link, of the other nodes). Kept apart because its queries gather answers from many shards.

use std::sync::Arc;

use super::{catch_up, reply, to_owner};
use crate::{
    cluster::PresenceQuery,
    ids::owner_of,
    messages::{PresenceMsg, ReplyTo},
    routing::state::PendingPresence,
    shard::{Shard, ShardState},
};

/// Handles a presence message.
pub fn handle(shard: &Shard, st: &mut ShardState, msg: PresenceMsg, now: u64) {
    match msg {
        PresenceMsg::Query { query, from, users } => {
            let online = users
                .into_iter()
                .map(|(i, u)| (i, st.users.directory.is_online(&u)))
                .collect();
            st.mesh.send(from, PresenceMsg::Answer { query, online });
        }
        PresenceMsg::Answer { query, online } => presence_answer(shard, st, query, online, now),
        PresenceMsg::Channel { channel, reply } => {
            channel_presence_at_owner(shard, st, &channel, reply, now)
        }
    }
}

/// Tells the cluster link (if any) how many connections `user` now has on this node.
pub(crate) fn report_presence(shard: &Shard, st: &ShardState, user: &Arc<str>) {
    if let Some(link) = &shard.config.cluster {
        link.presence_changed(user, st.users.directory.connections(user));
    }
}

/// Presence of `users`: answered here for users this shard owns, by their owners for the rest.
pub fn presence_users(
    shard: &Shard,
    st: &mut ShardState,
    users: Vec<Arc<str>>,
    reply_to: ReplyTo,
    now: u64,
) {
    catch_up(shard, st, now);
    let n = shard.config.shards;
    let mut answers: Vec<(Arc<str>, bool)> = Vec::with_capacity(users.len());
    let mut remote: Vec<Vec<(usize, Arc<str>)>> = vec![Vec::new(); n];
    for (i, user) in users.into_iter().enumerate() {
        let owner = owner_of(&user, n);
        let online = owner == shard.id && st.users.directory.is_online(&user);
        if owner != shard.id {
            remote[owner].push((i, user.clone()));
        }
        answers.push((user, online));
    }
    let remaining = remote.iter().filter(|r| !r.is_empty()).count();
    if remaining == 0 {
        return presence_users_done(shard, st, answers, reply_to, now);
    }
    st.presence.next_query += 1;
    let query = st.presence.next_query;
    st.presence.pending.insert(
        query,
        PendingPresence {
            conn: reply_to.conn,
            id: reply_to.id,
            users: answers,
            remaining,
        },
    );
    for (owner, users) in remote.into_iter().enumerate() {
        if !users.is_empty() {
            st.mesh.send(
                owner,
                PresenceMsg::Query {
                    query,
                    from: shard.id,
                    users,
                },
            );
        }
    }
}

/// This node's answer to a users presence query is complete: in cluster mode the bridge adds the other
/// nodes' users and replies; otherwise (or with Redis down) the reply goes out now.
fn presence_users_done(
    shard: &Shard,
    st: &mut ShardState,
    users: Vec<(Arc<str>, bool)>,
    reply: ReplyTo,
    now: u64,
) {
    let query = PresenceQuery::Users { users, reply };
    let query = match &shard.config.cluster {
        Some(link) => match link.query_presence(query) {
            Ok(()) => return,
            Err(q) => q,
        },
        None => query,
    };
    let (frame, reply) = query.local_answer();
    self::reply(shard, st, &reply, frame, now);
}

/// An owner's answer to a presence query; the reply goes out with the last one.
pub(super) fn presence_answer(
    shard: &Shard,
    st: &mut ShardState,
    query: u64,
    online: Vec<(usize, bool)>,
    now: u64,
) {
    let Some(pending) = st.presence.pending.get_mut(&query) else {
        return;
    };
    for (i, on) in online {
        if let Some(slot) = pending.users.get_mut(i) {
            slot.1 = on;
        }
    }
    pending.remaining -= 1;
    if pending.remaining > 0 {
        return;
    }
    let Some(done) = st.presence.pending.remove(&query) else {
        return;
    };
    let reply = ReplyTo {
        shard: shard.id,
        conn: done.conn,
        id: done.id,
    };
    presence_users_done(shard, st, done.users, reply, now);
}

/// Presence of a channel: asked of its owner.
pub fn presence_channel(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    reply: ReplyTo,
    now: u64,
) {
    let owner = owner_of(&channel, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        PresenceMsg::Channel { channel, reply },
        now,
    );
}

/// Owner step of a channel presence query.
pub(super) fn channel_presence_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    channel: &str,
    reply_to: ReplyTo,
    now: u64,
) {
    let users: Vec<Arc<str>> = match st.channels.index.get(channel) {
        Some(entry) => entry.users().cloned().collect(),
        None => Vec::new(),
    };
    let query = PresenceQuery::Channel {
        channel: Arc::from(channel),
        users,
        reply: reply_to,
    };
    let query = match &shard.config.cluster {
        Some(link) => match link.query_presence(query) {
            Ok(()) => return,
            Err(q) => q,
        },
        None => query,
    };
    let (frame, reply_to) = query.local_answer();
    reply(shard, st, &reply_to, frame, now);
}
