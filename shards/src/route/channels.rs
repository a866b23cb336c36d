//! Channel routing: subscribes and unsubscribes kept in the owner's index, their acks, channel
//! resumes, and publishes fanned out to the subscribing shards. Kept apart so a channel's path reads
//! end to end in one place.

use std::sync::Arc;

use bytes::Bytes;

use super::{reply, to_owner, to_shard, users::answer};
use crate::{
    ids::{ConnId, owner_of},
    messages::{Ack, ChannelMsg, HistoryMsg, Origin, ReplyTo},
    protocol::encode,
    shard::{Shard, ShardState},
};

/// Handles a channels message: every step a channel's subscriptions and publications take at a shard
/// starts here.
pub fn handle(shard: &Shard, st: &mut ShardState, msg: ChannelMsg, now: u64) {
    match msg {
        ChannelMsg::Sub {
            channel,
            user,
            info,
            shard: holder,
            ack,
            since,
        } => chan_sub_at_owner(shard, st, channel, (user, info), holder, (ack, since), now),
        ChannelMsg::Unsub {
            channel,
            user,
            shard: holder,
        } => chan_unsub_at_owner(shard, st, channel, user, holder, now),
        ChannelMsg::Ready { channel } => {
            let (acks, resumes) = match st.channels.index.get_mut(&channel) {
                Some(entry) => entry.release(),
                None => Default::default(),
            };
            ack_subscribed(shard, st, &channel, acks, now);
            for req in resumes {
                resume_channel_at_owner(shard, st, channel.clone(), req, now);
            }
        }
        ChannelMsg::Publish {
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
        ChannelMsg::Deliver {
            channel,
            frame,
            exclude,
            seq,
        } => deliver_channel_local(shard, st, &channel, &frame, (exclude, seq), now),
    }
}

/// Owner step of a subscribe: the index, the cluster reports, then the ack or, for a subscribe with
/// `since`, the channel's replay (both held in cluster mode until the node listens to the channel's
/// Redis topic, so that every publication after the replay reaches the connection live).
pub(super) fn chan_sub_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    (user, info): (Arc<str>, Option<Arc<str>>),
    holder: usize,
    (ack, since): (Option<ReplyTo>, Option<Box<crate::history::ResumeRequest>>),
    now: u64,
) {
    let joined = st
        .channels
        .index
        .subscribe(channel.clone(), user.clone(), holder);
    if joined.first {
        crate::webhooks::emit::occupied(shard, &channel, true);
    }
    // A presence member's cluster record carries its info: written by `pusher::presence`.
    let presence = info.is_some();
    if let Some(info) = info {
        use crate::pusher::presence;
        let member = (&user, info);
        if !presence::joined(
            shard,
            st,
            &channel,
            member,
            joined.user_joined,
            ack.as_ref(),
            now,
        ) {
            // The presence channel is full: undone before anyone outside this shard saw it.
            let mut released = Vec::new();
            st.channels
                .index
                .unsubscribe(&channel, &user, holder, &mut released);
            ack_subscribed(shard, st, &channel, released, now);
            if let Some(ack) = ack {
                presence::refuse(shard, st, channel, ack, now);
            }
            return;
        }
    }
    if let Some(link) = &shard.config.cluster {
        report_subscriptions(link, st, &channel);
        if joined.user_joined && !presence {
            link.channel_member(&channel, &user, true);
        }
        if joined.first
            && link.channel_interest(&channel, true)
            && let Some(entry) = st.channels.index.get_mut(&channel)
        {
            entry.wait();
        }
    }
    if let Some(req) = since {
        match st.channels.index.get_mut(&channel) {
            Some(entry) if entry.is_waiting() => entry.hold_resume(*req),
            _ => resume_channel_at_owner(shard, st, channel.clone(), *req, now),
        }
    }
    let Some(ack) = ack else {
        return;
    };
    match st.channels.index.get_mut(&channel) {
        Some(entry) if entry.is_waiting() => entry.hold(ack),
        _ => ack_subscribed(shard, st, &channel, vec![ack], now),
    }
}

/// True when publications to `channel` are numbered and kept.
fn keeps_history(shard: &Shard, channel: &str) -> bool {
    shard.config.history.enabled() && shard.config.channel_history.matches(channel)
}

/// Owner step of a subscribe with `since`, once the connection receives the channel's publications
/// live: read the channel's stream here, or in Redis through the bridge, and answer the connection's
/// shard.
pub(super) fn resume_channel_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    req: crate::history::ResumeRequest,
    now: u64,
) {
    use crate::history::{Gap, Outcome};
    let (outcome, frames) = if !keeps_history(shard, &channel) {
        (Outcome::not_kept(Gap::NoHistory), Vec::new())
    } else {
        match &shard.config.cluster {
            Some(link) => match link.resume_channel(channel.clone(), req) {
                Ok(()) => return,
                Err(back) => {
                    return send_chan_resumed(
                        shard,
                        st,
                        channel,
                        back,
                        Outcome::unavailable(),
                        vec![],
                        now,
                    );
                }
            },
            None => st.history.channels.resume(&channel, &req.from, now),
        }
    };
    send_chan_resumed(shard, st, channel, req, outcome, frames, now);
}

/// Sends a channel resume's answer to the connection's shard (in place when it is this one).
fn send_chan_resumed(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    req: crate::history::ResumeRequest,
    outcome: crate::history::Outcome,
    frames: Vec<Bytes>,
    now: u64,
) {
    if req.shard == shard.id {
        crate::history::resume::finish_channel(shard, st, req.conn, &channel, outcome, frames, now);
    } else {
        st.mesh.send(
            req.shard,
            HistoryMsg::ChannelResumed {
                conn: req.conn,
                channel,
                outcome,
                frames,
            },
        );
    }
}

/// Owner step of an unsubscribe (or a subscribed connection closing).
pub(super) fn chan_unsub_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    user: Arc<str>,
    holder: usize,
    now: u64,
) {
    let mut released = Vec::new();
    let left = st
        .channels
        .index
        .unsubscribe(&channel, &user, holder, &mut released);
    let presence = crate::pusher::presence::is_presence(&channel);
    if left.user_left && presence {
        crate::pusher::presence::left(shard, st, &channel, &user, now);
    }
    if left.last {
        crate::webhooks::emit::occupied(shard, &channel, false);
    }
    if let Some(link) = &shard.config.cluster {
        report_subscriptions(link, st, &channel);
        if left.user_left && !presence {
            link.channel_member(&channel, &user, false);
        }
        if left.last {
            link.channel_interest(&channel, false);
        }
    }
    ack_subscribed(shard, st, &channel, released, now);
}

/// A Pusher channel's subscription count on this node, for the cluster (`subscription_count`).
fn report_subscriptions(
    link: &Arc<dyn crate::cluster::ClusterLink>,
    st: &ShardState,
    channel: &Arc<str>,
) {
    if crate::pusher::names::external(channel).is_some() {
        let count = st
            .channels
            .index
            .get(channel)
            .map_or(0, |e| e.connections());
        link.pusher_subscriptions(channel, count);
    }
}

/// Sends the acks of subscriptions to `channel`.
pub(super) fn ack_subscribed(
    shard: &Shard,
    st: &mut ShardState,
    channel: &str,
    acks: Vec<ReplyTo>,
    now: u64,
) {
    let presence = crate::pusher::presence::is_presence(channel);
    for ack in acks {
        if presence && let Some(link) = &shard.config.cluster {
            // This node's members, completed with the other nodes' in Redis by the bridge.
            let members = st.channels.pusher_members.of(channel);
            let query = crate::cluster::PresenceQuery::PusherMembers {
                channel: Arc::from(channel),
                members: members
                    .into_iter()
                    .map(|(m, i)| (m.clone(), i.clone()))
                    .collect(),
                reply: ack,
            };
            if let Err(query) = link.query_presence(query) {
                let (target, msg) = query.answer_msg();
                to_shard(shard, st, target, msg, now);
            }
            continue;
        }
        if presence {
            // The member list as this shard knows it now, the joining member included.
            let frame = crate::pusher::presence::succeeded(
                channel,
                &st.channels.pusher_members.of(channel),
            );
            let msg = crate::pusher::presence::succeeded_at(ack.conn, Arc::from(channel), frame);
            to_shard(shard, st, ack.shard, msg, now);
            continue;
        }
        let frame = subscribed_frame(channel, ack.id.as_deref());
        reply(shard, st, &ack, frame, now);
    }
}

/// The ack of a subscription to `channel`: protocol v1's `subscribed`, or Pusher's
/// `subscription_succeeded` for an app's channel.
fn subscribed_frame(channel: &str, id: Option<&str>) -> Bytes {
    match crate::pusher::names::external(channel) {
        Some((_, name)) => crate::pusher::frames::subscription_succeeded(name),
        None => encode::ack(id, "subscribed", None),
    }
}

/// Entry of a channel publish: to the channel's owner shard.
pub fn publish(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    frame: Bytes,
    reply: Origin,
    now: u64,
) {
    let self_subscribed = match &reply {
        Origin::Conn(r) | Origin::Silent(r) => st.channels.local.contains(&channel, r.conn),
        Origin::External(_) | Origin::Skip { .. } => false,
    };
    let owner = owner_of(&channel, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        ChannelMsg::Publish {
            channel,
            frame,
            reply,
            self_subscribed,
            local_only: false,
            seq: 0,
        },
        now,
    );
}

/// Owner step of a publish: to every subscribing shard (excluding the publisher), then the ack; in
/// cluster mode the bridge takes the publication to the other nodes and answers with the total.
///
/// A channel with history numbers the publication first and delivers it to every subscriber, the
/// publisher included (its stream must have no holes): here on a single node; in cluster mode the
/// bridge numbers it in Redis and publishes it from the same script, so every node receives the
/// channel's publications in `seq` order, and this node's subscribers get it back like the others'.
pub(super) fn publish_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    frame: Bytes,
    reply_to: Origin,
    (self_subscribed, local_only, seq): (bool, bool, u64),
    now: u64,
) {
    let (frame, reply_to, seq) = if local_only || !keeps_history(shard, &channel) {
        (frame, reply_to, seq)
    } else {
        match &shard.config.cluster {
            None => {
                let (frame, seq) = st.history.channels.append(&channel, &frame, now);
                (frame, reply_to, seq)
            }
            Some(link) => match link.sequence_publish(channel.clone(), frame, reply_to) {
                Ok(()) => return,
                // Redis down: published unnumbered, as on a channel without history.
                Err((frame, reply_to)) => (frame, reply_to, 0),
            },
        }
    };
    let (targets, total) = match st.channels.index.get(&channel) {
        Some(entry) => (entry.shards.clone(), entry.connections()),
        None => Default::default(),
    };
    let numbered = seq != 0;
    let skip = match &reply_to {
        Origin::Skip { socket, .. } => crate::pusher::socket::local_socket(shard, socket),
        _ => None,
    };
    for &(target, _) in &targets {
        let target = target as usize;
        let exclude = match &reply_to {
            Origin::Conn(r) | Origin::Silent(r) if r.shard == target && !numbered => Some(r.conn),
            _ => skip.filter(|(on, _)| *on == target).map(|(_, conn)| conn),
        };
        if target == shard.id {
            deliver_channel_local(shard, st, &channel, &frame, (exclude, seq), now);
        } else {
            shard.metrics.routed_cross.increment(1);
            st.mesh.send(
                target,
                ChannelMsg::Deliver {
                    channel: channel.clone(),
                    frame: frame.clone(),
                    exclude,
                    seq,
                },
            );
        }
    }
    let conns = total - u64::from(self_subscribed && total > 0 && !numbered);
    if !local_only && let Some(link) = &shard.config.cluster {
        link.forward_publish(channel, frame, conns, reply_to);
        return;
    }
    answer(
        shard,
        st,
        reply_to,
        Ack {
            status: "published",
            conns,
        },
        now,
    );
}

/// Subscriber step of a publish: every local subscriber but `exclude` (a subscriber resuming the
/// channel holds it until its replay is out).
pub(super) fn deliver_channel_local(
    shard: &Shard,
    st: &mut ShardState,
    channel: &str,
    frame: &Bytes,
    (exclude, seq): (Option<ConnId>, u64),
    now: u64,
) {
    let ShardState {
        channels,
        conns,
        history,
        ..
    } = st;
    let bound = shard.config.outbound_queue_bytes;
    for conn in channels.local.subscribers(channel) {
        if Some(conn) != exclude {
            shard.metrics.routed_local.increment(1);
            let copy = crate::history::resume::deliver_channel(
                &mut history.resuming,
                conns,
                bound,
                conn,
                channel,
                seq,
                frame.clone(),
                now,
            );
            if copy {
                shard.metrics.resume_duplicates.increment(1);
            }
        }
    }
}

/// A connection subscribed: local table, then the channel's owner.
///
/// The `subscribed` ack always comes from the owner, once the channel's index counts the connection
/// (and, in cluster mode, once this node listens to the channel across the cluster): whatever the
/// client does after the ack (an HTTP publication, a channel query) reaches the owner after the
/// subscription and sees it. With `since` the connection holds the channel's live publications until
/// its replay comes, and the ack comes with the replay.
pub fn subscribed(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    (user, info): (Arc<str>, Option<Arc<str>>),
    ack: ReplyTo,
    since: Option<crate::history::Position>,
    now: u64,
) {
    if info.is_none() {
        st.channels.local.add(channel.clone(), ack.conn);
    } // else: a presence member receives the channel from its `subscription_succeeded` on
    let owner = owner_of(&channel, shard.config.shards);
    let (ack, since) = match since {
        Some(from) => {
            st.history
                .resuming
                .start_channel(ack.conn, channel.clone(), ack.id.clone(), now);
            let req = crate::history::ResumeRequest {
                shard: shard.id,
                conn: ack.conn,
                from,
            };
            (None, Some(Box::new(req)))
        }
        None => (Some(ack), None),
    };
    to_owner(
        shard,
        st,
        owner,
        ChannelMsg::Sub {
            channel,
            user,
            info,
            shard: shard.id,
            ack,
            since,
        },
        now,
    );
}

/// A connection unsubscribed: local table, then the channel's owner.
pub fn unsubscribed(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    user: Arc<str>,
    conn: ConnId,
    now: u64,
) {
    st.history.resuming.forget_channel(conn, &channel);
    leave_channel(shard, st, channel, user, conn, now);
}

/// `conn` (of `user`) leaves `channel`: out of this shard's table, and the channel's owner is told.
pub(super) fn leave_channel(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    user: Arc<str>,
    conn: ConnId,
    now: u64,
) {
    st.channels.local.remove(&channel, conn);
    let owner = owner_of(&channel, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        ChannelMsg::Unsub {
            channel,
            user,
            shard: shard.id,
        },
        now,
    );
}
