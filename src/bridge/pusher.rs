//! Pusher presence across the cluster: the bridge turns each node-local member change into the
//! cluster's decision (Redis, [`PusherMembers`]) and sends the member event it calls for, once,
//! through the channel's owner shard (which delivers it here and publishes it to the other nodes).
//!
//! - A member's first socket on this node: `member_added`, unless the member has a socket on another
//!   node already. Its last socket here: `member_removed`, unless it has one elsewhere.
//! - A dead node (its alive key expired; found by any survivor's heartbeat): its members are removed
//!   and those with no socket left anywhere get `member_removed`, sent by the one survivor whose sweep
//!   found them. This is what keeps a SIGKILLed node's members from haunting the channel.
//! - Redis down: each node decides alone (its own first and last sockets), as on a single node.

use std::{collections::VecDeque, sync::Arc};

use shards::{
    inbox::Inbox,
    messages::{Origin, ReplyTo},
    pusher::presence::{member_event, member_event_name, member_frame},
    pusher::{
        gather::reply_from_outside,
        query::{Ask, Query},
    },
};
use tracing::{info, warn};

use crate::{
    cluster::{PusherMembers, occupancy::Kind},
    relay::Relay,
};

/// A member's first join (with its info) or last leave on this node.
pub struct MemberChange {
    /// The channel's internal name.
    pub channel: Arc<str>,
    /// The member's internal user name.
    pub member: Arc<str>,
    /// Its `user_info` on a join; `None` on a leave.
    pub info: Option<Arc<str>>,
    /// The joining socket (it learns of itself from `subscription_succeeded`).
    pub joiner: Option<ReplyTo>,
}

/// Writes the queued changes in order and sends the events the cluster decides; a change stays
/// queued until written (a failed write is retried after the reconnect).
pub async fn apply(
    store: &mut PusherMembers,
    queue: &mut VecDeque<MemberChange>,
    inboxes: &[Arc<Inbox>],
    tracker: &mut super::occupancy::Tracker,
) -> redis::RedisResult<()> {
    while let Some(change) = queue.front() {
        let decided =
            super::timed(store.change(&change.channel, &change.member, change.info.as_deref()))
                .await?;
        let change = queue.pop_front().expect("front exists");
        if decided {
            hook(&change, tracker);
            send(change, inboxes);
        }
    }
    Ok(())
}

/// Shutdown: the queued changes are written and decided, and the events go straight to the other
/// nodes (this node's shards are closing and will not relay them).
pub async fn apply_at_shutdown(
    store: &mut PusherMembers,
    queue: &mut VecDeque<MemberChange>,
    relay: &Relay,
    tracker: &mut super::occupancy::Tracker,
) -> redis::RedisResult<()> {
    while let Some(change) = queue.pop_front() {
        let decided =
            super::timed(store.change(&change.channel, &change.member, change.info.as_deref()))
                .await?;
        if decided {
            hook(&change, tracker);
            let joined = change.info.is_some();
            let event = member_event_name(joined);
            let info = change.info.as_deref();
            let frame = member_frame(&change.channel, event, &change.member, info);
            relay.publish(change.channel, frame, 0, Origin::External(Box::new(|_| {})));
        }
    }
    Ok(())
}

/// Redis is down: every queued change is decided by this node alone.
pub fn decide_locally(queue: &mut VecDeque<MemberChange>, inboxes: &[Arc<Inbox>]) {
    for change in queue.drain(..) {
        send(change, inboxes);
    }
}

/// Sweeps dead `node`'s presence members and sends `member_removed` for those gone from the cluster
/// (their webhooks come from the occupancy sweep).
pub async fn sweep(
    store: &mut PusherMembers,
    node: &str,
    inboxes: &[Arc<Inbox>],
) -> redis::RedisResult<()> {
    let departed = super::timed(store.sweep(node)).await?;
    if !departed.is_empty() {
        info!(
            node,
            members = departed.len(),
            "removed the presence members of a dead node"
        );
    }
    for (channel, member) in departed {
        let change = MemberChange {
            channel: Arc::from(channel),
            member: Arc::from(member),
            info: None,
            joiner: None,
        };
        send(change, inboxes);
    }
    Ok(())
}

/// The webhook of a decided member change: through the occupancy tracker, which adds the grace of
/// `member_removed` across the cluster.
fn hook(change: &MemberChange, tracker: &mut super::occupancy::Tracker) {
    let name = super::occupancy::member_name(&change.channel, &change.member);
    tracker.record(Kind::Member, &name, change.info.is_some());
}

/// Completes a Pusher channel query with the other live nodes' entries and answers it (this node's
/// answer alone when Redis fails).
pub fn query(queries: &super::queries::Queries, mut query: Query) {
    let (conn, node_id, inboxes) = (
        queries.conn.clone(),
        queries.node_id.clone(),
        queries.inboxes.clone(),
    );
    tokio::spawn(async move {
        let mut store = PusherMembers::new(conn, node_id);
        let found = super::timed(async {
            match &query.ask {
                Ask::Channel(channel) | Ask::Users(channel) => {
                    let (subs, members) = store.channel(channel).await?;
                    query.facts.subscriptions += subs;
                    query.facts.users.extend(members.into_iter().map(Arc::from));
                }
                Ask::Several(channels) => {
                    for channel in channels {
                        let (subs, members) = store.channel(channel).await?;
                        query.facts.counts.push((channel.clone(), subs));
                        let members = members.into_iter().map(Arc::from).collect();
                        query.facts.channels.push((channel.clone(), members));
                    }
                }
                Ask::Channels { app, prefix } => {
                    let channels = store.channels(app, prefix).await?;
                    query
                        .facts
                        .channels
                        .extend(channels.into_iter().map(|(c, users)| {
                            (Arc::from(c), users.into_iter().map(Arc::from).collect())
                        }));
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = found {
            warn!(error = %e, "channel query failed in Redis; answering for this node");
        }
        reply_from_outside(query, &inboxes);
    });
}

/// Sends the change's member event through the channel's owner shard.
fn send(change: MemberChange, inboxes: &[Arc<Inbox>]) {
    if inboxes.is_empty() {
        return;
    }
    let (owner, msg) = member_event(
        &change.channel,
        &change.member,
        change.info.as_deref(),
        change.joiner,
        inboxes.len(),
    );
    let _ = inboxes[owner].send(msg);
}
