//! Operations the control plane (HTTP API, later the cluster bridge) runs on a shard.
//!
//! They are sent as [`crate::messages::NodeMsg::Invoke`] and run on the shard's thread with its state
//! borrowed, like seastar's `invoke_on`; each returns what the caller needs to build its answer. None of
//! them waits on another shard.

use std::sync::Arc;

use crate::{
    shard::{Shard, ShardState},
    ws::CloseReason,
};

/// Connections of `user` over every shard, as the user's owner shard's directory counts them.
pub fn user_connections(st: &ShardState, user: &str) -> u64 {
    st.users.directory.connections(user)
}

/// Every user this shard owns, with its connections on this node: what the cluster bridge re-asserts in
/// Redis on each presence refresh and after Redis comes back empty.
pub fn owned_users(st: &ShardState) -> Vec<(Arc<str>, u64)> {
    st.users
        .directory
        .iter()
        .map(|(u, n)| (u.clone(), n))
        .collect()
}

/// [`owned_users`] of one slice: the users `u` with `ids::owner_of(u, slices) == slice` (the bridge
/// refreshes a slice at a time, so the refresh of a large node is spread over its interval).
pub fn owned_users_in(st: &ShardState, slices: usize, slice: usize) -> Vec<(Arc<str>, u64)> {
    st.users
        .directory
        .iter()
        .filter(|(u, _)| crate::ids::owner_of(u, slices) == slice)
        .map(|(u, n)| (u.clone(), n))
        .collect()
}

/// Every channel this shard owns with its subscribed users on this node: what the bridge re-asserts as
/// channel presence (and the topics it resubscribes) after Redis comes back.
pub fn owned_channels(st: &ShardState) -> Vec<(Arc<str>, Vec<Arc<str>>)> {
    st.channels
        .index
        .iter()
        .map(|(c, e)| (c.clone(), e.users().cloned().collect()))
        .collect()
}

/// A presence member of a channel with its `user_info`: (channel, member, info).
pub type MemberInfo = (Arc<str>, Arc<str>, Arc<str>);

/// What this shard's Pusher channels hold on this node, for the bridge to re-assert after Redis comes
/// back: each presence member with its `user_info`, and each app channel's subscription count.
pub fn owned_pusher(st: &ShardState) -> (Vec<MemberInfo>, Vec<(Arc<str>, u64)>) {
    let mut members = Vec::new();
    let mut counts = Vec::new();
    for (channel, entry) in st.channels.index.iter() {
        if crate::pusher::names::external(channel).is_none() {
            continue;
        }
        counts.push((channel.clone(), entry.connections()));
        for (member, info) in st.channels.pusher_members.of(channel) {
            members.push((channel.clone(), member.clone(), info.clone()));
        }
    }
    (members, counts)
}

/// Closes every local connection of `user` with `reason`; returns how many.
pub fn disconnect_user(st: &mut ShardState, user: &str, reason: CloseReason, now: u64) -> usize {
    let conns: Vec<_> = st.users.local.get(user).to_vec();
    for &id in &conns {
        st.conns.close(id, reason, now);
    }
    conns.len()
}

/// Closes up to `max` open connections of this shard with `reason` (oldest slots first); returns how
/// many were closed. Connections already closing are not counted.
pub fn close_connections(
    shard: &Shard,
    st: &mut ShardState,
    max: usize,
    reason: CloseReason,
    now: u64,
) -> usize {
    let ids = st.conns.open_ids(max);
    let closed = ids.len();
    for id in ids {
        st.conns.close(id, reason, now);
    }
    if closed > 0 {
        tracing::info!(
            shard = shard.id,
            closed,
            reason = reason.label(),
            "closing connections on request"
        );
    }
    closed
}
