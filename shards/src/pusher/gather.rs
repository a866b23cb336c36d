//! A channel query gathered from the shards that own the channels: each adds what it knows, and whoever
//! completes the answer (the last shard, or the bridge) sends it back to the waiting connection's shard
//! as an invocation that writes the response.

use std::sync::{Arc, Mutex};

use super::{
    http, names,
    query::{Ask, Query},
};
use crate::{
    ids::owner_of,
    messages::{Invocation, NodeMsg},
    shard::{Shard, ShardState},
};

/// Starts `query` from the connection's shard.
pub fn start(shard: &Shard, st: &mut ShardState, query: Query, now: u64) {
    match &query.ask {
        Ask::Channel(channel) | Ask::Users(channel) => {
            let owner = owner_of(channel, shard.config.shards);
            on(
                shard,
                st,
                owner,
                Box::new(move |shard, st, now| {
                    let mut query = query;
                    local_channel(st, &mut query);
                    complete(shard, st, query, now);
                }),
                now,
            );
        }
        Ask::Channels { .. } | Ask::Several(_) => {
            let shards = shard.config.shards;
            let gather = Arc::new(Mutex::new((Some(query), shards)));
            for target in 0..shards {
                let gather = gather.clone();
                on(
                    shard,
                    st,
                    target,
                    Box::new(move |shard, st, now| {
                        let done = {
                            let mut g = gather.lock().unwrap_or_else(|e| e.into_inner());
                            if let Some(q) = &mut g.0 {
                                local_channels(shard, st, q);
                            }
                            g.1 -= 1;
                            if g.1 == 0 { g.0.take() } else { None }
                        };
                        if let Some(query) = done {
                            complete(shard, st, query, now);
                        }
                    }),
                    now,
                );
            }
        }
    }
}

/// Runs `f` on shard `target` (in place when it is this one).
fn on(shard: &Shard, st: &mut ShardState, target: usize, f: Invocation, now: u64) {
    if target == shard.id {
        f(shard, st, now);
    } else {
        st.mesh.send(target, NodeMsg::Invoke(f));
    }
}

/// At a channel's owner: its subscriptions and members on this node.
fn local_channel(st: &ShardState, query: &mut Query) {
    let (Ask::Channel(channel) | Ask::Users(channel)) = &query.ask else {
        return;
    };
    if let Some(entry) = st.channels.index.get(channel) {
        query.facts.subscriptions = entry.connections();
        if super::presence::is_presence(channel) {
            query.facts.users = entry.users().cloned().collect();
        }
    }
}

/// At every shard: the app's channels it owns that match the prefix, or the asked channels it owns.
fn local_channels(shard: &Shard, st: &ShardState, query: &mut Query) {
    let presence_users = |channel: &Arc<str>, entry: &crate::routing::channels::ChannelEntry| {
        if super::presence::is_presence(channel) {
            entry.users().cloned().collect()
        } else {
            Vec::new()
        }
    };
    match &query.ask {
        Ask::Channels { app, prefix } => {
            for (channel, entry) in st.channels.index.iter() {
                let Some((owner_app, name)) = names::external(channel) else {
                    continue;
                };
                if owner_app != &**app || !name.starts_with(prefix.as_str()) {
                    continue;
                }
                let users = presence_users(channel, entry);
                query.facts.channels.push((channel.clone(), users));
            }
        }
        Ask::Several(asked) => {
            for channel in asked {
                if owner_of(channel, shard.config.shards) != shard.id {
                    continue;
                }
                if let Some(entry) = st.channels.index.get(channel) {
                    query
                        .facts
                        .counts
                        .push((channel.clone(), entry.connections()));
                    let users = presence_users(channel, entry);
                    query.facts.channels.push((channel.clone(), users));
                }
            }
        }
        _ => {}
    }
}

/// This node's answer is complete: the bridge adds the other nodes' (cluster mode), or it goes out.
fn complete(shard: &Shard, st: &mut ShardState, query: Query, now: u64) {
    match &shard.config.cluster {
        Some(link) => link.pusher_query(query),
        None => reply(shard, st, query, now),
    }
}

/// Sends `query`'s answer to its connection (from a shard).
fn reply(shard: &Shard, st: &mut ShardState, query: Query, now: u64) {
    let (target, conn) = query.reply;
    let response = query.response();
    on(
        shard,
        st,
        target,
        Box::new(move |shard, st, now| http::answer_later(shard, st, conn, &response, now)),
        now,
    );
}

/// Sends `query`'s answer to its connection from outside the shards (the bridge).
pub fn reply_from_outside(query: Query, inboxes: &[Arc<crate::inbox::Inbox>]) {
    let (target, conn) = query.reply;
    let response = query.response();
    if let Some(inbox) = inboxes.get(target) {
        let _ = inbox.send(NodeMsg::Invoke(Box::new(move |shard, st, now| {
            http::answer_later(shard, st, conn, &response, now)
        })));
    }
}
