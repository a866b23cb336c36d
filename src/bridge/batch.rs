//! The bridge's batches: moving the shards' queued reports into the bridge's state, and writing them to
//! Redis (presence counts, channel members and interest, Pusher members and counts, occupancy for
//! webhooks), plus the full re-assertions after a reconnect.

use super::*;
use shards::messages::{ChannelMsg, NodeMsg};

/// Moves queued reports into `state` and starts the requests; with no session (Redis down) requests
/// are answered at once without the other nodes.
pub(super) fn drain_events(link: &BridgeLink, state: &mut BridgeState, session: Option<&Session>) {
    // Channel resumes wait for nothing (the owner asked once this node listens): read in one go.
    let mut channel_resumes = Vec::new();
    while let Some(event) = link.events.pop() {
        match event {
            Event::Presence(user, conns) => {
                state.pending.insert(user, conns);
            }
            Event::Channel(channel, interested) => {
                use crate::cluster::occupancy::Kind;
                state.occupancy.record(Kind::Channel, &channel, interested);
                if interested {
                    state.channels.insert(channel.clone());
                    state.forget.remove(&channel);
                    state.confirm.push(channel.clone());
                } else {
                    state.channels.remove(&channel);
                    state.forget.insert(channel.clone());
                }
                state.touched.insert(channel);
            }
            Event::Member(channel, user, member) => {
                state.members.insert((channel, user), member);
            }
            Event::PresenceMember(change) => state.presence.push_back(change),
            Event::PusherSubscriptions(channel, count) => {
                state.subscriptions.insert(channel, count);
            }
            Event::PusherQuery(query) => match session {
                Some(s) => pusher::query(&s.queries, query),
                None => shards::pusher::gather::reply_from_outside(
                    query,
                    link.inboxes.get().map_or(&[], |i| &i[..]),
                ),
            },
            Event::Forward {
                to,
                frame,
                local,
                origin,
            } => match session {
                Some(s) => s.relay.forward(to, frame, local, origin),
                None => link.unavailable(local, origin),
            },
            Event::Publish {
                channel,
                frame,
                local,
                origin,
            } => match session {
                Some(s) => s.relay.publish(channel, frame, local, origin),
                None => link.unpublished(local, origin),
            },
            Event::Sequence {
                to,
                frame,
                here,
                origin,
            } => match session {
                Some(s) => s.relay.sequence(to, frame, here, origin),
                None => relay::outgoing::deliver_unnumbered(
                    to,
                    frame,
                    origin,
                    link.inboxes.get().map_or(&[], |i| &i[..]),
                ),
            },
            Event::SequencePublish {
                channel,
                frame,
                origin,
            } => match session {
                Some(s) => s.relay.sequence_publish(channel, frame, origin),
                None => relay::outgoing::publish_unnumbered(
                    channel,
                    frame,
                    origin,
                    link.inboxes.get().map_or(&[], |i| &i[..]),
                ),
            },
            Event::ResumeChannel { channel, req } => match session {
                Some(_) => channel_resumes.push((StreamOf::Channel, channel, req)),
                None => relay::send_chan_resumed(
                    link.inboxes.get().map_or(&[], |i| &i[..]),
                    channel,
                    req,
                    Outcome::unavailable(),
                    Vec::new(),
                ),
            },
            Event::Resume { user, req } => match session {
                Some(_) => state.resumes.push((StreamOf::User, user, req)),
                None => relay::send_resumed(
                    link.inboxes.get().map_or(&[], |i| &i[..]),
                    req,
                    Outcome::unavailable(),
                    Vec::new(),
                ),
            },
            Event::Confirm(user, conns, req) => {
                state.pending.insert(user, conns);
                match session {
                    Some(_) => state.readies.push(req),
                    None => link.admitted(vec![req], ClusterState::Degraded),
                }
            }
            Event::Query(query) => match session {
                Some(s) => s.queries.presence(query),
                None => queries::reply_local(query, link.inboxes.get().map_or(&[], |i| &i[..])),
            },
            Event::Lookup { user, reply } => match session {
                Some(s) => s.queries.lookup(user, reply),
                None => drop(reply.send(None)),
            },
            Event::Disconnect { user, reply } => match session {
                Some(s) => s.queries.disconnect(user, reply),
                None => drop(reply.send(None)),
            },
        }
    }
    if let Some(s) = session
        && !channel_resumes.is_empty()
    {
        s.relay.resume(channel_resumes);
    }
    gauge!("gateway_cluster_channels").set(state.channels.len() as f64);
}

/// Brings the listening connection in line with the channels this node has subscribers of, then
/// releases the subscribe acks waiting for it.
pub(super) async fn sync_channels(
    session: &mut Session,
    state: &mut BridgeState,
    inboxes: &Arc<[Arc<Inbox>]>,
) -> redis::RedisResult<()> {
    if !state.touched.is_empty() {
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for channel in state.touched.drain() {
            match (
                state.channels.contains(&channel),
                session.subscribed.contains(&channel),
            ) {
                (true, false) => add.push(channel),
                (false, true) => remove.push(channel),
                _ => {}
            }
        }
        if let Err(e) = timed(session.subscriber.sync(&add, &remove)).await {
            // Resync these on the next connection (every wanted channel is, anyway).
            state.touched.extend(add.into_iter().chain(remove));
            return Err(e);
        }
        for channel in remove {
            session.subscribed.remove(&channel);
        }
        session.subscribed.extend(add);
    }
    release_confirms(state, inboxes);
    Ok(())
}

/// Answers resumes still waiting when the Redis connection failed (`unavailable`), and identifies
/// (`ready` degraded).
pub(super) fn fail_resumes(link: &BridgeLink, state: &mut BridgeState, inboxes: &[Arc<Inbox>]) {
    for (_, _, req) in state.resumes.drain(..) {
        relay::send_resumed(inboxes, req, Outcome::unavailable(), Vec::new());
    }
    link.admitted(std::mem::take(&mut state.readies), ClusterState::Degraded);
}

/// Tells the owner shards their channels are listened to (or that Redis is down, which does not
/// wait either): the held subscribe acks go out.
pub(super) fn release_confirms(state: &mut BridgeState, inboxes: &[Arc<Inbox>]) {
    for channel in state.confirm.drain(..) {
        let owner = owner_of(&channel, inboxes.len());
        if inboxes[owner].send(ChannelMsg::Ready { channel }).is_err() {
            warn!("owner shard inbox full; a subscribe ack waits for the next confirmation");
        }
    }
}

/// Writes the pending presence and channel-member changes in pipelined batches.
pub(super) async fn write_pending(
    session: &mut Session,
    shared: &Shared,
    inboxes: &Arc<[Arc<Inbox>]>,
    state: &mut BridgeState,
) -> redis::RedisResult<()> {
    drain_events(&shared.link, state, Some(session));
    if shared.link.overflowed.swap(false, Ordering::AcqRel) {
        refresh(&mut session.presence, inboxes, state, None).await?;
        reassert_channels(&mut session.members, inboxes, state).await?;
        reassert_pusher(&mut session.pusher, inboxes).await?;
        return sync_channels(session, state, inboxes).await;
    }
    if !state.forget.is_empty() {
        let gone: Vec<Arc<str>> = state.forget.drain().collect();
        timed(session.members.forget_channels(&gone)).await?;
    }
    if !state.members.is_empty() {
        let changes: Vec<_> = state.members.drain().collect();
        let refs: Vec<(&str, &str, bool)> =
            changes.iter().map(|((c, u), m)| (&**c, &**u, *m)).collect();
        timed(session.members.apply(&refs)).await?;
    }
    pusher::apply(
        &mut session.pusher,
        &mut state.presence,
        inboxes,
        &mut state.occupancy,
    )
    .await?;
    if !state.subscriptions.is_empty() {
        let counts: Vec<(Arc<str>, u64)> = state.subscriptions.drain().collect();
        timed(session.pusher.set_subscriptions(&counts)).await?;
    }
    if !state.pending.is_empty() {
        write_presence(session, state).await?;
    }
    let hooks = session.webhooks.clone();
    let node = session.queries.node_id.clone();
    state
        .occupancy
        .apply(&mut session.occupancy, &node, hooks.as_deref())
        .await
}

/// Writes the pending presence counts (and records the users' transitions for webhooks).
pub(super) async fn write_presence(
    session: &mut Session,
    state: &mut BridgeState,
) -> redis::RedisResult<()> {
    let batch: Vec<(Arc<str>, u32)> = state
        .pending
        .drain()
        .map(|(u, n)| (u, n.min(u32::MAX as u64) as u32))
        .collect();
    for (user, count) in &batch {
        // A v1 user's first connection on this node, or its last (Pusher's users are apps' own).
        let before = state.applied.get(user).copied().unwrap_or(0);
        if (before == 0) != (*count == 0) && shards::pusher::names::external(user).is_none() {
            let kind = crate::cluster::occupancy::Kind::User;
            state.occupancy.record(kind, user, *count > 0);
        }
    }
    let fences = timed(session.presence.set_many(&batch, now_ms())).await?;
    record(&batch, &fences, state);
    Ok(())
}

/// Slices of the periodic presence refresh: about one a second, at most 60 per interval.
pub(super) fn refresh_slices(interval: Duration) -> usize {
    (interval.as_secs() as usize).clamp(1, 60)
}

/// Re-asserts local users' presence: every user (`part` `None`: the recovery after reconnects), or the
/// slice `part = (slices, slice)` of them (the periodic refresh, one slice per tick).
pub(super) async fn refresh(
    presence: &mut PresenceStore,
    inboxes: &Arc<[Arc<Inbox>]>,
    state: &mut BridgeState,
    part: Option<(usize, usize)>,
) -> redis::RedisResult<()> {
    let users = match part {
        None => ask_shards(inboxes, control::owned_users).await,
        Some((slices, slice)) => {
            ask_shards(inboxes, move |st| {
                control::owned_users_in(st, slices, slice)
            })
            .await
        }
    };
    let batch: Vec<(Arc<str>, u32)> = users
        .into_iter()
        .map(|(u, n)| (u, n.min(u32::MAX as u64) as u32))
        .collect();
    let in_part = |u: &str| part.is_none_or(|(slices, slice)| owner_of(u, slices) == slice);
    // Users this bridge wrote that no shard owns any more were missed on the way down: remove them.
    let live: HashSet<&str> = batch.iter().map(|(u, _)| &**u).collect();
    let gone: Vec<Arc<str>> = state
        .applied
        .keys()
        .filter(|u| in_part(u) && !live.contains(&***u))
        .cloned()
        .collect();
    let ts = now_ms();
    if !gone.is_empty() {
        timed(presence.remove_node(&gone, ts)).await?;
        for u in &gone {
            state.applied.remove(u);
        }
    }
    let fences = timed(presence.set_many(&batch, ts)).await?;
    record(&batch, &fences, state);
    Ok(())
}

/// Re-reads every channel and member from the shards and rewrites this node's channel presence (after
/// a reconnect, Redis may have restarted empty; after a queue overflow, reports were lost). Every
/// channel is marked for the next sync of the listening connection.
pub(super) async fn reassert_channels(
    members: &mut ChannelMembers,
    inboxes: &Arc<[Arc<Inbox>]>,
    state: &mut BridgeState,
) -> redis::RedisResult<()> {
    let owned = ask_shards(inboxes, control::owned_channels).await;
    let channels: HashSet<Arc<str>> = owned.iter().map(|(c, _)| c.clone()).collect();
    state.touched.extend(state.channels.drain());
    state.touched.extend(channels.iter().cloned());
    state.channels = channels;
    state.members.clear();
    state.forget.clear();
    timed(members.remove_own()).await?;
    let changes: Vec<(&str, &str, bool)> = owned
        .iter()
        .flat_map(|(c, users)| users.iter().map(move |u| (&**c, &**u, true)))
        .collect();
    timed(members.apply(&changes)).await
}

/// Re-asserts what this node's Pusher channels hold (after [`reassert_channels`], which wrote their
/// members without their info): each presence member's `user_info`, each channel's subscription count.
pub(super) async fn reassert_pusher(
    store: &mut PusherMembers,
    inboxes: &Arc<[Arc<Inbox>]>,
) -> redis::RedisResult<()> {
    let owned = ask_shards(inboxes, |st| vec![control::owned_pusher(st)]).await;
    let (mut members, mut counts) = (Vec::new(), Vec::new());
    for (m, c) in owned {
        members.extend(m);
        counts.extend(c);
    }
    timed(store.set_infos(&members)).await?;
    timed(store.set_subscriptions(&counts)).await
}

/// Keeps `state.applied` in step with what Redis accepted; counts fenced writes.
pub(super) fn record(
    batch: &[(Arc<str>, u32)],
    fences: &[crate::cluster::Fence],
    state: &mut BridgeState,
) {
    counter!("gateway_presence_writes_total").increment(batch.len() as u64);
    for ((user, count), fence) in batch.iter().zip(fences) {
        if *fence == crate::cluster::Fence::Stale {
            counter!("gateway_presence_stale_total").increment(1);
            continue;
        }
        if *count == 0 {
            state.applied.remove(user);
        } else {
            state.applied.insert(user.clone(), *count);
        }
    }
}

/// Runs `op` on every shard and concatenates the results (bounded wait per shard).
pub(super) async fn ask_shards<T: Send + 'static>(
    inboxes: &Arc<[Arc<Inbox>]>,
    op: impl Fn(&shards::shard::ShardState) -> Vec<T> + Copy + Send + 'static,
) -> Vec<T> {
    let mut all = Vec::new();
    for inbox in inboxes.iter() {
        let (tx, rx) = oneshot::channel();
        let msg = NodeMsg::Invoke(Box::new(move |_, st, _| {
            let _ = tx.send(op(st));
        }));
        if inbox.send(msg).is_err() {
            continue;
        }
        if let Ok(Ok(items)) = tokio::time::timeout(OP_TIMEOUT, rx).await {
            all.extend(items);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_goes_in_slices_of_about_a_second() {
        assert_eq!(refresh_slices(Duration::from_millis(300)), 1);
        assert_eq!(refresh_slices(Duration::from_secs(30)), 30);
        assert_eq!(refresh_slices(Duration::from_secs(600)), 60);
    }
}
