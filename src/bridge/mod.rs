//! The bridge thread: the one place that talks to Redis.
//!
//! Owner shards report presence, channel interest and channel membership through [`BridgeLink`] (a
//! lock-free queue plus a notify; a shard never waits on Redis), and hand it what must reach other
//! nodes. The bridge runs its own small tokio runtime and:
//! - writes presence and channel-member changes to Redis in batches (one pipelined round trip per
//!   1,000 changes, every [`BATCH_WINDOW`] at most);
//! - keeps its listening connection subscribed to exactly the channel topics this node has subscribers
//!   of, and tells each channel's owner shard once it is (the held subscribe acks then go out);
//! - relays direct messages, publications and disconnects to the other nodes ([`crate::relay`]) and
//!   completes presence queries with the other nodes' entries;
//! - re-asserts every local user's presence each `presence_refresh_ms`, asking the shards for their
//!   owned users through `NodeMsg::Invoke`, a slice of them about every second (and all at once after
//!   Redis comes back, which covers a Redis restarted empty);
//! - heartbeats the node registry and caches the cluster's node list for `GET /v1/nodes`;
//! - keeps `gateway_redis_up` and the readiness flag true to the link's state, reconnecting with capped
//!   exponential backoff and jitter;
//! - sweeps the channel members of nodes whose alive key expired, and their registry entry once they
//!   have been dead for the presence TTL (by then nothing else of them is left in Redis);
//! - on shutdown marks the node draining, and once the shards are done removes its presence fields,
//!   channel members and registry entry.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::cluster::conn::Conn;
use metrics::{counter, gauge};
use shards::{
    admit::ClusterState,
    control,
    history::{HistoryConfig, Outcome, ResumeRequest},
    ids::owner_of,
    inbox::Inbox,
};
use tokio::sync::{Notify, oneshot};
use tracing::{info, warn};

use crate::{
    cluster::{
        ChannelMembers, Liveness, NodeInfo, NodeState, NodeStats, NodeView, PresenceStore,
        PusherMembers, Registry,
        history::{HistoryStore, StreamOf},
        keys, now_ms,
    },
    relay::{
        self, Relay,
        subscriber::{Subscriber, TopicEnded, has_sharded_pubsub},
    },
};

mod backoff;
mod batch;
mod lifecycle;

use batch::{
    drain_events, fail_resumes, reassert_channels, reassert_pusher, refresh, release_confirms,
    sync_channels, write_pending,
};
use lifecycle::{finish, heartbeat};
pub mod cluster_target;
mod link;
mod occupancy;
mod pusher;
mod queries;
pub mod target;

use queries::Queries;
use target::{Resolved, Target};

use backoff::{Backoff, sleep_until_due};
pub use link::BridgeLink;
use link::Event;

/// Longest a presence change waits before it is written (changes in the window are coalesced).
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Bound on one Redis operation, and on asking the shards for their users.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Least pause before a new session on a Redis Cluster (see `run`).
const CLUSTER_SETTLE: Duration = Duration::from_secs(2);
/// Bound on the final clean-up at shutdown.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// What the admin server reads: the Redis link's state and the cached node list.
pub struct ClusterView {
    /// The link whose `redis_up` flag this view reports.
    link: Arc<BridgeLink>,
    /// `/readyz` fails while Redis is down when this is set.
    pub require_for_ready: bool,
    /// The registry as of the last heartbeat.
    nodes: Mutex<Vec<NodeView>>,
    /// This node's id.
    node_id: String,
}

impl ClusterView {
    /// True while Redis answers.
    pub fn redis_up(&self) -> bool {
        self.link.redis_up.load(Ordering::Acquire)
    }

    /// True once the node's first Redis session was up and its state restored: the start-up gate of
    /// `/readyz` (a node that never reached the cluster gets no clients; afterwards readiness follows
    /// `require_for_ready`).
    pub fn reached_once(&self) -> bool {
        self.link.reached_once.load(Ordering::Acquire)
    }

    /// The cluster's nodes as of the last heartbeat.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.nodes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The other nodes holding `user` (`None` when Redis is down or failed).
    pub async fn remote_holders(&self, user: &str) -> Option<Vec<(String, u32)>> {
        self.link.remote_holders(user).await
    }

    /// Closes `user`'s connections on the other nodes (`None` when Redis is down or failed).
    pub async fn disconnect_remote(&self, user: &str) -> Option<u64> {
        self.link.disconnect_remote(user).await
    }
}

/// Settings of the bridge.
pub struct BridgeConfig {
    /// Redis URL.
    pub redis_url: String,
    /// This node's id.
    pub node_id: String,
    /// What this node tells the registry about itself.
    pub info: NodeInfo,
    /// Presence entry life without refresh.
    pub presence_ttl: Duration,
    /// Interval of full presence refreshes.
    pub presence_refresh: Duration,
    /// Interval of registry heartbeats.
    pub heartbeat_interval: Duration,
    /// Alive-key life without heartbeat.
    pub node_ttl: Duration,
    /// See [`ClusterView::require_for_ready`].
    pub require_for_ready: bool,
    /// The load figures each heartbeat reports.
    pub stats: Arc<dyn Fn() -> NodeStats + Send + Sync>,
    /// Per-user history limits (the streams in Redis).
    pub history: HistoryConfig,
    /// Where the cluster's webhook decisions go (member added/removed, channel occupied/vacated).
    pub webhooks: Option<Arc<dyn shards::webhooks::WebhookSink>>,
    /// How long a going (vacated, member removed, user offline) waits for a return anywhere.
    pub webhook_grace: Duration,
}

/// Control of the running bridge.
pub struct Bridge {
    /// The bridge thread.
    thread: JoinHandle<()>,
    /// Shared with the thread.
    shared: Arc<Shared>,
    /// For the admin server.
    view: Arc<ClusterView>,
}

/// State shared between [`Bridge`] and its thread.
struct Shared {
    link: Arc<BridgeLink>,
    draining: AtomicBool,
    stop: AtomicBool,
    wake: Notify,
}

impl Bridge {
    /// Starts the bridge thread.
    pub fn spawn(
        config: BridgeConfig,
        link: Arc<BridgeLink>,
        inboxes: Arc<[Arc<Inbox>]>,
    ) -> std::io::Result<Bridge> {
        let _ = link.inboxes.set(inboxes.clone());
        let view = Arc::new(ClusterView {
            link: link.clone(),
            require_for_ready: config.require_for_ready,
            nodes: Mutex::new(Vec::new()),
            node_id: config.node_id.clone(),
        });
        let shared = Arc::new(Shared {
            link,
            draining: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (s, v) = (shared.clone(), view.clone());
        let thread = std::thread::Builder::new()
            .name("bridge".into())
            .spawn(move || runtime.block_on(run(config, s, v, inboxes)))?;
        Ok(Bridge {
            thread,
            shared,
            view,
        })
    }

    /// The view the admin server reads.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.clone()
    }

    /// Marks the node draining in the registry (at the next heartbeat, which this triggers).
    pub fn draining(&self) {
        self.shared.draining.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }

    /// After the shards have stopped: writes what is pending, removes this node's presence and registry
    /// entry, and waits for the thread (bounded).
    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        self.shared.link.notify.notify_one();
        let _ = self.thread.join();
    }
}

/// The bridge's loop: connect (with backoff), serve until Redis fails or shutdown, repeat.
async fn run(
    config: BridgeConfig,
    shared: Arc<Shared>,
    view: Arc<ClusterView>,
    inboxes: Arc<[Arc<Inbox>]>,
) {
    let up = gauge!("gateway_redis_up");
    up.set(0.0);
    let mut target = match Target::new(&config.redis_url) {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "invalid redis_url; cluster mode disabled");
            return;
        }
    };
    let mut state = BridgeState::default();
    state.occupancy.enabled = config.webhooks.is_some();
    state.occupancy.grace = config.webhook_grace;
    let mut backoff = Backoff::new();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        match target.connect().await {
            Ok((server, conn)) => {
                match &server.master {
                    Some((host, port)) => {
                        info!(url = %config.redis_url, master = %format!("{host}:{port}"), "connected to the Sentinel master")
                    }
                    None => info!(url = %config.redis_url, "connected to Redis"),
                }
                backoff.reset();
                let ended = serve(
                    &config, &server, &target, conn, &shared, &view, &inboxes, &mut state,
                )
                .await;
                if ended == Ended::Stopped {
                    return;
                }
                set_up(&view, false);
                counter!("gateway_redis_reconnects_total").increment(1);
            }
            Err(e) => warn!(error = %e, "Redis unreachable; retrying"),
        }
        // While Redis is down, keep the queue from growing: remember only the latest count per user,
        // answer requests without the other nodes, and let held subscribe acks go.
        drain_events(&shared.link, &mut state, None);
        pusher::decide_locally(&mut state.presence, &inboxes);
        release_confirms(&mut state, &inboxes);
        fail_resumes(&shared.link, &mut state, &inboxes);
        let mut delay = backoff.next();
        if matches!(target, Target::Cluster(_)) {
            // A cluster's nodes learn a failover from each other over a second or so; a session
            // started at once may take its slot map (and place its subscriptions) from one that has
            // not yet (tests/redis_cluster.rs saw a subscription left on the demoted master).
            delay = delay.max(CLUSTER_SETTLE);
        }
        counter!("gateway_redis_disconnected_ms_total").increment(delay.as_millis() as u64);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.wake.notified() => {}
            // Sentinel announced a new master: go now.
            _ = target.news() => {}
        }
    }
}

/// What the bridge knows between connections.
#[derive(Default)]
struct BridgeState {
    /// Counts written to Redis, by user (count > 0 only): what shutdown removes.
    applied: HashMap<Arc<str>, u32>,
    /// Changes not yet written, latest count per user.
    pending: HashMap<Arc<str>, u64>,
    /// Channels with a subscriber on this node: the topics this node listens to (`gateway:ch:<name>`),
    /// kept across reconnects so they can be resubscribed.
    channels: HashSet<Arc<str>>,
    /// Channels whose interest changed since the last sync with the listening connection.
    touched: HashSet<Arc<str>>,
    /// Channels whose owner shard holds subscribe acks until it gets `ChannelMsg::Ready`.
    confirm: Vec<Arc<str>>,
    /// Channel membership changes not yet written, latest per (channel, user).
    members: HashMap<(Arc<str>, Arc<str>), bool>,
    /// Channels this node lost interest in, to drop from its channel set in Redis.
    forget: HashSet<Arc<str>>,
    /// Resuming connections whose stream is read once the presence writes before them are done.
    resumes: Vec<(StreamOf, Arc<str>, ResumeRequest)>,
    /// Identified connections whose `ready` goes out once the presence writes before them are done.
    readies: Vec<shards::admit::ReadyRequest>,
    /// Pusher presence member changes not yet decided, in order.
    presence: std::collections::VecDeque<pusher::MemberChange>,
    /// Pusher channels' subscription counts not yet written, latest per channel.
    subscriptions: HashMap<Arc<str>, u64>,
    /// Occupancy and user presence for webhooks, decided across the cluster.
    occupancy: occupancy::Tracker,
}

/// Why [`serve`] returned.
#[derive(PartialEq, Eq)]
enum Ended {
    /// Redis failed: reconnect.
    RedisFailed,
    /// Shutdown complete.
    Stopped,
}

/// Everything tied to one Redis connection.
struct Session {
    presence: PresenceStore,
    registry: Registry,
    members: ChannelMembers,
    /// Pusher presence members and the cluster's first-join and last-leave decisions.
    pusher: PusherMembers,
    /// Where the cluster's webhook decisions go.
    webhooks: Option<Arc<dyn shards::webhooks::WebhookSink>>,
    /// Occupancy decisions (webhooks only).
    occupancy: crate::cluster::occupancy::Occupancy,
    subscriber: Subscriber,
    /// Topics the listening connection is subscribed to.
    subscribed: HashSet<Arc<str>>,
    /// Dead nodes whose channel members this session already swept.
    swept: HashSet<String>,
    /// How long a dead node's registry entry is kept (shown as `dead`): the presence TTL, after which
    /// nothing of the node is left in Redis.
    keep_dead: Duration,
    relay: Arc<Relay>,
    queries: Queries,
}

impl Drop for Session {
    /// However the session ends, its relay stops writing to this connection's server.
    fn drop(&mut self) {
        self.relay.end();
    }
}

/// Serves one Redis connection: batches, refreshes, heartbeats, subscriptions.
#[allow(clippy::too_many_arguments)]
async fn serve(
    config: &BridgeConfig,
    server: &Resolved,
    target: &Target,
    mut conn: Conn,
    shared: &Shared,
    view: &ClusterView,
    inboxes: &Arc<[Arc<Inbox>]>,
    state: &mut BridgeState,
) -> Ended {
    let sharded = has_sharded_pubsub(&mut conn).await;
    let (subscriber, pushes) = match timed(Subscriber::connect(
        &server.endpoint,
        &keys::node_channel(&config.node_id),
        sharded,
        OP_TIMEOUT,
    ))
    .await
    {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "could not open the listening connection to Redis");
            return Ended::RedisFailed;
        }
    };
    let relay = Relay::new(
        config.node_id.clone(),
        conn.clone(),
        config.presence_ttl,
        sharded,
        inboxes.clone(),
        Arc::new(HistoryStore::new(config.history)),
    );
    let mut session = Session {
        presence: PresenceStore::new(conn.clone(), config.node_id.clone(), config.presence_ttl),
        registry: Registry::new(
            conn.clone(),
            config.node_id.clone(),
            config.info.clone(),
            config.node_ttl,
        )
        .with_stats(config.stats.clone()),
        members: ChannelMembers::new(conn.clone(), config.node_id.clone()),
        pusher: PusherMembers::new(conn.clone(), config.node_id.clone()),
        webhooks: config.webhooks.clone(),
        occupancy: crate::cluster::occupancy::Occupancy::new(conn.clone(), config.node_id.clone()),
        subscriber,
        subscribed: HashSet::new(),
        swept: HashSet::new(),
        keep_dead: config.presence_ttl,
        relay: relay.clone(),
        queries: Queries {
            conn,
            node_id: config.node_id.clone(),
            presence_ttl: config.presence_ttl,
            inboxes: inboxes.clone(),
            relay: relay.clone(),
        },
    };
    let (dropped_tx, mut dropped) = tokio::sync::mpsc::unbounded_channel();
    let mut listening = tokio::spawn(relay::serve(relay, pushes, dropped_tx));
    // (Re)connected: Redis may have restarted empty; re-assert everything at once.
    let recovered = async {
        refresh(&mut session.presence, inboxes, state, None).await?;
        reassert_channels(&mut session.members, inboxes, state).await?;
        reassert_pusher(&mut session.pusher, inboxes).await?;
        sync_channels(&mut session, state, inboxes).await?;
        heartbeat(&mut session, shared, view).await
    };
    if let Err(e) = recovered.await {
        warn!(error = %e, "could not restore this node's state in Redis");
        listening.abort();
        return Ended::RedisFailed;
    }
    info!(
        sharded_pubsub = session.subscriber.sharded(),
        channels = state.channels.len(),
        "cluster state restored in Redis"
    );
    set_up(view, true);
    // The periodic refresh goes a slice of the users at a time, one slice a second or so, so that a
    // node with many users does not write them all at once (which held cross-node delivery up for
    // as long, docs/BENCHMARKS.md "A Redis Cluster"); every user still comes once per interval.
    let slices = batch::refresh_slices(config.presence_refresh);
    let mut slice = 0;
    let mut refresh_tick = tokio::time::interval(config.presence_refresh / slices as u32);
    let mut heartbeat_tick = tokio::time::interval(config.heartbeat_interval);
    refresh_tick.reset();
    heartbeat_tick.reset();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            let _ =
                tokio::time::timeout(SHUTDOWN_TIMEOUT, finish(&mut session, shared, state)).await;
            listening.abort();
            return Ended::Stopped;
        }
        let result = tokio::select! {
            _ = shared.link.notify.notified() => {
                // Forwards and subscriptions go out at once; presence changes wait for the batch
                // window to coalesce.
                drain_events(&shared.link, state, Some(&session));
                match sync_channels(&mut session, state, inboxes).await {
                    Err(e) => Err(e),
                    Ok(()) => {
                        // A client waiting for its `ready` (or its replay) waits for this write:
                        // no coalescing window then. Writes still batch by themselves: whatever
                        // arrives while one is in flight goes out in the next.
                        let waiting = !state.readies.is_empty() || !state.resumes.is_empty();
                        let members = !state.members.is_empty() || !state.presence.is_empty();
                        if !waiting && (!state.pending.is_empty() || members) {
                            tokio::time::sleep(BATCH_WINDOW).await;
                        }
                        let written = write_pending(&mut session, shared, inboxes, state).await;
                        if written.is_ok() && !state.resumes.is_empty() {
                            // Presence before these resumes is in Redis: read their streams.
                            session.relay.resume(std::mem::take(&mut state.resumes));
                        }
                        if written.is_ok() && !state.readies.is_empty() {
                            // Presence before these identifies is in Redis: `ready` goes out.
                            let readies = std::mem::take(&mut state.readies);
                            shared.link.admitted(readies, ClusterState::Confirmed);
                        }
                        written
                    }
                }
            }
            ended = &mut listening => Err(match ended {
                Ok(Err(e)) => e,
                _ => redis::RedisError::from(std::io::Error::other("listening connection ended")),
            }),
            Some(channel) = dropped.recv() => match session.subscriber.ended(&channel) {
                _ if !state.channels.contains(&channel) => Ok(()),
                TopicEnded::Here => Ok(()),
                // The topic's slot moved (failover, resharding): subscribed again once settled.
                TopicEnded::Moved => {
                    counter!("gateway_cluster_topics_moved_total").increment(1);
                    Ok(())
                }
                TopicEnded::Server => {
                    info!(channel = %channel, "Redis ended the subscription to a channel's topic; subscribing again");
                    counter!("gateway_redis_resubscribes_total").increment(1);
                    session.subscriber.sync(&[channel], &[]).await
                }
            },
            _ = refresh_tick.tick() => {
                slice = (slice + 1) % slices;
                refresh(&mut session.presence, inboxes, state, Some((slices, slice))).await
            }
            _ = sleep_until_due(session.subscriber.moved_due()) => {
                let wanted = &state.channels;
                timed(session.subscriber.place_moved(|c| wanted.contains(c))).await.map(|n| {
                    info!(topics = n, "subscribed again to channel topics whose slot moved");
                })
            }
            _ = sleep_until_due(state.occupancy.due()) => {
                let hooks = session.webhooks.clone();
                state.occupancy.confirm_due(&mut session.occupancy, hooks.as_deref(), false).await
            }
            _ = heartbeat_tick.tick() => heartbeat(&mut session, shared, view).await,
            _ = shared.wake.notified() => heartbeat(&mut session, shared, view).await,
            // Sentinel moved the master: this one no longer takes writes (or is gone).
            _ = target.moved_from(&server.master) => Err(redis::RedisError::from(
                std::io::Error::other("Sentinel switched the master"),
            )),
        };
        if let Err(e) = result {
            warn!(error = %e, "Redis operation failed; reconnecting");
            counter!("gateway_redis_errors_total").increment(1);
            listening.abort();
            return Ended::RedisFailed;
        }
    }
}

/// Bounds a Redis operation.
async fn timed<T>(op: impl Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Redis operation timed out",
        ))),
    }
}

/// Records the link's state for readiness and metrics.
fn set_up(view: &ClusterView, up: bool) {
    let was = view.link.redis_up.swap(up, Ordering::AcqRel);
    if up {
        view.link.reached_once.store(true, Ordering::Release);
    }
    gauge!("gateway_redis_up").set(if up { 1.0 } else { 0.0 });
    if was && !up {
        warn!("Redis link down: local traffic goes on; presence is re-asserted when it is back");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::cluster::ClusterLink;

    #[test]
    fn the_link_keeps_the_latest_count_and_flags_overflow() {
        let link = BridgeLink::new();
        let user: Arc<str> = "amy".into();
        link.presence_changed(&user, 1);
        link.presence_changed(&user, 2);
        let mut state = BridgeState::default();
        drain_events(&link, &mut state, None);
        assert_eq!(state.pending.get("amy"), Some(&2));
        assert!(!link.overflowed.load(Ordering::Acquire));
        let room: Arc<str> = "room".into();
        link.channel_interest(&room, true);
        drain_events(&link, &mut state, None);
        assert!(state.channels.contains("room"));
        link.channel_interest(&room, false);
        drain_events(&link, &mut state, None);
        assert!(state.channels.is_empty());
    }
}
