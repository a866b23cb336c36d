//! The events a shard decides alone, handed to the node's [`WebhookSink`](super::WebhookSink) when
//! one is configured.
//!
//! Called by the owner shard of a user or channel at its first arrival or last departure on this node;
//! in cluster mode occupancy and online state are decided by the bridge, so nothing is sent from here.

use std::sync::Arc;

use super::Hook;
use crate::shard::Shard;

/// The owner shard of `channel`: its first subscriber on this node came (`true`) or its last left.
/// On a single node that is the channel's occupancy; in cluster mode the bridge decides it across
/// the nodes from the same transitions (reported as channel interest), so nothing is sent here.
pub fn occupied(shard: &Shard, channel: &Arc<str>, first: bool) {
    let Some(sink) = &shard.config.webhooks else {
        return;
    };
    if shard.config.cluster.is_some() {
        return;
    }
    let channel = channel.clone();
    sink.emit(if first {
        Hook::ChannelOccupied { channel }
    } else {
        Hook::ChannelVacated { channel }
    });
}

/// The owner shard of `user`: its first connection on this node came (`true`) or its last left.
/// On a single node that is the user's online state; in cluster mode the bridge decides it.
pub fn online(shard: &Shard, user: &Arc<str>, first: bool) {
    let Some(sink) = &shard.config.webhooks else {
        return;
    };
    if shard.config.cluster.is_some() {
        return;
    }
    let user = user.clone();
    sink.emit(if first {
        Hook::UserOnline { user }
    } else {
        Hook::UserOffline { user }
    });
}

/// A presence member's first socket came (`true`) or its last left, on a single node.
pub fn member(shard: &Shard, channel: &Arc<str>, member: &Arc<str>, added: bool) {
    let Some(sink) = &shard.config.webhooks else {
        return;
    };
    let (channel, member) = (channel.clone(), member.clone());
    sink.emit(if added {
        Hook::MemberAdded { channel, member }
    } else {
        Hook::MemberRemoved { channel, member }
    });
}
