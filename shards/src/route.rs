//! Routing: where a message goes once it has entered the node, and the inbox messages that carry it.
//!
//! Every route tries the local fast path first: if this shard owns the user or channel, the owner step
//! runs in place; if this shard holds the recipients, delivery is a queue push. Only what lives
//! elsewhere crosses an inbox, and then exactly one hop per step.

use std::sync::Arc;

use bytes::Bytes;

use crate::{
    cluster::PresenceQuery,
    ids::{ConnId, owner_of},
    messages::{Ack, Origin, ReplyTo, ShardMsg},
    protocol::encode,
    shard::{Shard, ShardState, begin_shutdown},
};

/// Handles one message from the inbox.
pub fn handle(shard: &Shard, st: &mut ShardState, msg: ShardMsg, now: u64) {
    match msg {
        ShardMsg::DirAdd {
            user,
            shard: holder,
            admit,
        } => {
            st.directory.add(user.clone(), holder);
            if st.directory.connections(&user) == 1 {
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
            st.directory.remove(&user, holder);
            if st.directory.connections(&user) == 0 {
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
            let (acks, resumes) = match st.index.get_mut(&channel) {
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
                .map(|(i, u)| (i, st.directory.is_online(&u)))
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

/// Owner step of a subscribe: the index, the cluster reports, then the ack or, for a subscribe with
/// `since`, the channel's replay (both held in cluster mode until the node listens to the channel's
/// Redis topic, so that every publication after the replay reaches the connection live).
fn chan_sub_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    (user, info): (Arc<str>, Option<Arc<str>>),
    holder: usize,
    (ack, since): (Option<ReplyTo>, Option<Box<crate::history::ResumeRequest>>),
    now: u64,
) {
    let joined = st.index.subscribe(channel.clone(), user.clone(), holder);
    if joined.first {
        crate::webhooks::occupied(shard, &channel, true);
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
            st.index.unsubscribe(&channel, &user, holder, &mut released);
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
            && let Some(entry) = st.index.get_mut(&channel)
        {
            entry.wait();
        }
    }
    if let Some(req) = since {
        match st.index.get_mut(&channel) {
            Some(entry) if entry.is_waiting() => entry.hold_resume(*req),
            _ => resume_channel_at_owner(shard, st, channel.clone(), *req, now),
        }
    }
    let Some(ack) = ack else {
        return;
    };
    match st.index.get_mut(&channel) {
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
fn resume_channel_at_owner(
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
            None => st.channel_history.resume(&channel, &req.from, now),
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
            ShardMsg::ChanResumed {
                conn: req.conn,
                channel,
                outcome,
                frames,
            },
        );
    }
}

/// Owner step of an unsubscribe (or a subscribed connection closing).
fn chan_unsub_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    channel: Arc<str>,
    user: Arc<str>,
    holder: usize,
    now: u64,
) {
    let mut released = Vec::new();
    let left = st.index.unsubscribe(&channel, &user, holder, &mut released);
    let presence = crate::pusher::presence::is_presence(&channel);
    if left.user_left && presence {
        crate::pusher::presence::left(shard, st, &channel, &user, now);
    }
    if left.last {
        crate::webhooks::occupied(shard, &channel, false);
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
        let count = st.index.get(channel).map_or(0, |e| e.connections());
        link.pusher_subscriptions(channel, count);
    }
}

/// Sends the acks of subscriptions to `channel`.
fn ack_subscribed(shard: &Shard, st: &mut ShardState, channel: &str, acks: Vec<ReplyTo>, now: u64) {
    let presence = crate::pusher::presence::is_presence(channel);
    for ack in acks {
        if presence && let Some(link) = &shard.config.cluster {
            // This node's members, completed with the other nodes' in Redis by the bridge.
            let members = st.pusher_members.of(channel);
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
            let frame = crate::pusher::presence::succeeded(channel, &st.pusher_members.of(channel));
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

/// Tells the cluster link (if any) how many connections `user` now has on this node.
pub(crate) fn report_presence(shard: &Shard, st: &ShardState, user: &Arc<str>) {
    if let Some(link) = &shard.config.cluster {
        link.presence_changed(user, st.directory.connections(user));
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

/// A connection of `user` is now identified on this shard; with `admit`, the owner answers with its
/// verdict on the connection ([`crate::admit`]).
pub fn user_connected(
    shard: &Shard,
    st: &mut ShardState,
    user: &Arc<str>,
    conn: ConnId,
    admit: Option<crate::admit::Admit>,
    now: u64,
) {
    st.users.add(user.clone(), conn);
    let owner = owner_of(user, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        ShardMsg::DirAdd {
            user: user.clone(),
            shard: shard.id,
            admit,
        },
        now,
    );
}

/// A connection of `user` on this shard is gone: local tables, then the owners.
pub fn conn_gone(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    user: Arc<str>,
    subs: Vec<Arc<str>>,
    now: u64,
) {
    for channel in subs {
        st.channels.remove(&channel, conn);
        let owner = owner_of(&channel, shard.config.shards);
        to_owner(
            shard,
            st,
            owner,
            ShardMsg::ChanUnsub {
                channel,
                user: user.clone(),
                shard: shard.id,
            },
            now,
        );
    }
    st.users.remove(&user, conn);
    st.resuming.forget(conn);
    let owner = owner_of(&user, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        ShardMsg::DirRemove {
            user,
            shard: shard.id,
        },
        now,
    );
}

/// Entry of a direct message: to the recipient's owner shard.
pub fn send_to_user(
    shard: &Shard,
    st: &mut ShardState,
    to: Arc<str>,
    frame: Bytes,
    reply: Origin,
    now: u64,
) {
    let owner = owner_of(&to, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        ShardMsg::RouteUser {
            to,
            frame,
            reply,
            local_only: false,
            seq: 0,
        },
        now,
    );
}

/// Owner step of a direct message. With history on, a single node numbers and keeps the message here
/// and acks `stored` when no connection got it; in cluster mode the bridge numbers it in Redis and
/// delivers it everywhere (with Redis down: delivered here, unnumbered, and acked as degraded).
fn route_user_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    to: Arc<str>,
    frame: Bytes,
    reply_to: Origin,
    now: u64,
) {
    let history = shard.config.history.enabled();
    let Some(link) = &shard.config.cluster else {
        let (frame, seq) = if history {
            st.history.append(&to, &frame, now)
        } else {
            (frame, 0)
        };
        let conns = deliver_to_holders(shard, st, &to, &frame, seq, now);
        let status = match (conns, seq) {
            (0, 0) => "offline",
            (0, _) => "stored",
            _ => "delivered",
        };
        return answer(shard, st, reply_to, Ack { status, conns }, now);
    };
    let (frame, reply_to) = if history {
        let here = st.directory.holders(&to).is_some_and(|h| !h.is_empty());
        match link.sequence_user(to.clone(), frame, here, reply_to) {
            Ok(()) => return,
            Err(back) => back,
        }
    } else {
        (frame, reply_to)
    };
    // No history, or Redis down: this node's connections now, then the link forwards to the other
    // nodes (or, Redis being down, answers with this node's count).
    let conns = deliver_to_holders(shard, st, &to, &frame, 0, now);
    link.forward_user(to, frame, conns, reply_to);
}

/// Hands `frame` to every shard holding `to` (this one in place); returns the connections reached.
fn deliver_to_holders(
    shard: &Shard,
    st: &mut ShardState,
    to: &Arc<str>,
    frame: &Bytes,
    seq: u64,
    now: u64,
) -> u64 {
    let holders = st.directory.holders(to).cloned().unwrap_or_default();
    let mut conns = 0u64;
    for &(holder, n) in &holders {
        conns += n as u64;
        let holder = holder as usize;
        if holder == shard.id {
            deliver_user_local(shard, st, to, frame, seq, now);
        } else {
            shard.metrics.routed_cross.increment(1);
            st.mesh.send(
                holder,
                ShardMsg::DeliverUser {
                    to: to.clone(),
                    frame: frame.clone(),
                    seq,
                },
            );
        }
    }
    conns
}

/// Owner step of a resume (after the connection's `DirAdd`, so every later message reaches it live):
/// read from this shard's history, or from Redis through the bridge.
fn resume_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    user: Arc<str>,
    req: crate::history::ResumeRequest,
    now: u64,
) {
    let (outcome, frames) = match &shard.config.cluster {
        _ if !shard.config.history.enabled() => {
            (crate::history::Outcome::unavailable(), Vec::new())
        }
        Some(link) => match link.resume_user(user, req) {
            Ok(()) => return,
            Err(req) => {
                return send_resumed(
                    shard,
                    st,
                    req,
                    crate::history::Outcome::unavailable(),
                    Vec::new(),
                    now,
                );
            }
        },
        None => st.history.resume(&user, &req.from, now),
    };
    send_resumed(shard, st, req, outcome, frames, now);
}

/// Sends a resume's answer to the connection's shard (in place when it is this one).
fn send_resumed(
    shard: &Shard,
    st: &mut ShardState,
    req: crate::history::ResumeRequest,
    outcome: crate::history::Outcome,
    frames: Vec<Bytes>,
    now: u64,
) {
    if req.shard == shard.id {
        crate::history::resume::finish(shard, st, req.conn, outcome, frames, now);
    } else {
        st.mesh.send(
            req.shard,
            ShardMsg::Resumed {
                conn: req.conn,
                outcome,
                frames,
            },
        );
    }
}

/// A connection of `user` on this shard resumes its stream: the owner answers once it has
/// registered the connection (the request follows the `DirAdd` on the same path).
pub fn resume_user(
    shard: &Shard,
    st: &mut ShardState,
    user: Arc<str>,
    req: crate::history::ResumeRequest,
    now: u64,
) {
    let owner = owner_of(&user, shard.config.shards);
    to_owner(shard, st, owner, ShardMsg::ResumeUser { user, req }, now);
}

/// Answers a routed message's origin from outside the shards (the bridge): an ack frame is pushed
/// into the origin connection's shard inbox, an external sink is called directly.
pub fn answer_from_outside(
    origin: Origin,
    ack: Ack,
    inboxes: &[std::sync::Arc<crate::inbox::Inbox>],
) {
    match origin {
        Origin::Conn(reply_to) => {
            let frame = encode::ack(reply_to.id.as_deref(), ack.status, Some(ack.conns));
            if let Some(inbox) = inboxes.get(reply_to.shard) {
                let _ = inbox.send(ShardMsg::ToConn {
                    conn: reply_to.conn,
                    frame,
                });
            }
        }
        Origin::External(sink) | Origin::Skip { then: sink, .. } => sink(ack),
        Origin::Silent(_) => {}
    }
}

/// Sends a routed message's ack where it belongs: an ack frame to a connection, or the values to an
/// external sink.
fn answer(shard: &Shard, st: &mut ShardState, origin: Origin, ack: Ack, now: u64) {
    match origin {
        Origin::Conn(reply_to) => {
            let frame = encode::ack(reply_to.id.as_deref(), ack.status, Some(ack.conns));
            reply(shard, st, &reply_to, frame, now);
        }
        Origin::External(sink) | Origin::Skip { then: sink, .. } => sink(ack),
        Origin::Silent(_) => {}
    }
}

/// Holder step of a direct message: every local connection of `to` (a resuming one holds it until
/// its replay is out).
fn deliver_user_local(
    shard: &Shard,
    st: &mut ShardState,
    to: &str,
    frame: &Bytes,
    seq: u64,
    now: u64,
) {
    let ShardState {
        users,
        conns,
        resuming,
        ..
    } = st;
    for &conn in users.get(to) {
        shard.metrics.routed_local.increment(1);
        let bound = shard.config.outbound_queue_bytes;
        let copy =
            crate::history::resume::deliver(resuming, conns, bound, conn, seq, frame.clone(), now);
        if copy {
            shard.metrics.resume_duplicates.increment(1);
        }
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
        Origin::Conn(r) | Origin::Silent(r) => st.channels.contains(&channel, r.conn),
        Origin::External(_) | Origin::Skip { .. } => false,
    };
    let owner = owner_of(&channel, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        ShardMsg::RoutePublish {
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
fn publish_at_owner(
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
                let (frame, seq) = st.channel_history.append(&channel, &frame, now);
                (frame, reply_to, seq)
            }
            Some(link) => match link.sequence_publish(channel.clone(), frame, reply_to) {
                Ok(()) => return,
                // Redis down: published unnumbered, as on a channel without history.
                Err((frame, reply_to)) => (frame, reply_to, 0),
            },
        }
    };
    let (targets, total) = match st.index.get(&channel) {
        Some(entry) => (entry.shards.clone(), entry.connections()),
        None => Default::default(),
    };
    let numbered = seq != 0;
    let skip = match &reply_to {
        Origin::Skip { socket, .. } => crate::pusher::conn::local_socket(shard, socket),
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
                ShardMsg::DeliverChannel {
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
fn deliver_channel_local(
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
        resuming,
        ..
    } = st;
    let bound = shard.config.outbound_queue_bytes;
    for conn in channels.subscribers(channel) {
        if Some(conn) != exclude {
            shard.metrics.routed_local.increment(1);
            let copy = crate::history::resume::deliver_channel(
                resuming,
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
/// The `subscribed` ack goes to `ack` at once on a single node; in cluster mode the owner sends it
/// once this node listens to the channel across the cluster. With `since` the connection holds the
/// channel's live publications until its replay comes, and the ack comes with the replay.
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
        st.channels.add(channel.clone(), ack.conn);
    } // else: a presence member receives the channel from its `subscription_succeeded` on
    let owner = owner_of(&channel, shard.config.shards);
    let (ack, since) = match (since, &shard.config.cluster) {
        (Some(from), _) => {
            st.resuming
                .start_channel(ack.conn, channel.clone(), ack.id.clone(), now);
            let req = crate::history::ResumeRequest {
                shard: shard.id,
                conn: ack.conn,
                from,
            };
            (None, Some(Box::new(req)))
        }
        // A presence channel's ack carries the member list, which its owner holds.
        (None, Some(_)) | (None, None) if info.is_some() => (Some(ack), None),
        (None, Some(_)) => (Some(ack), None),
        (None, None) => {
            let frame = subscribed_frame(&channel, ack.id.as_deref());
            st.conns.enqueue(ack.conn, frame, now);
            (None, None)
        }
    };
    to_owner(
        shard,
        st,
        owner,
        ShardMsg::ChanSub {
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
    st.channels.remove(&channel, conn);
    st.resuming.forget_channel(conn, &channel);
    let owner = owner_of(&channel, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        ShardMsg::ChanUnsub {
            channel,
            user,
            shard: shard.id,
        },
        now,
    );
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
        let online = owner == shard.id && st.directory.is_online(&user);
        if owner != shard.id {
            remote[owner].push((i, user.clone()));
        }
        answers.push((user, online));
    }
    let remaining = remote.iter().filter(|r| !r.is_empty()).count();
    if remaining == 0 {
        return presence_users_done(shard, st, answers, reply_to, now);
    }
    st.next_query += 1;
    let query = st.next_query;
    st.presence.insert(
        query,
        crate::shard::PendingPresence {
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
                ShardMsg::PresenceQuery {
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
fn presence_answer(
    shard: &Shard,
    st: &mut ShardState,
    query: u64,
    online: Vec<(usize, bool)>,
    now: u64,
) {
    let Some(pending) = st.presence.get_mut(&query) else {
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
    let Some(done) = st.presence.remove(&query) else {
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
        ShardMsg::ChannelPresence { channel, reply },
        now,
    );
}

/// Owner step of a channel presence query.
fn channel_presence_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    channel: &str,
    reply_to: ReplyTo,
    now: u64,
) {
    let users: Vec<Arc<str>> = match st.index.get(channel) {
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
