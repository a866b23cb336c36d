//! The bridge thread: the one place that talks to Redis.
//!
//! Owner shards report presence and channel-interest changes through [`BridgeLink`] (a lock-free queue
//! plus a notify; a shard never waits on Redis). The bridge runs its own small tokio runtime and:
//! - writes presence changes to Redis in batches (one pipelined round trip per 1,000 users, every
//!   [`BATCH_WINDOW`] at most);
//! - re-asserts every local user's presence each `presence_refresh_ms`, asking the shards for their
//!   owned users through `ShardMsg::Invoke` (and at once after Redis comes back, which covers a Redis
//!   restarted empty);
//! - heartbeats the node registry and caches the cluster's node list for `GET /v1/nodes`;
//! - keeps `gateway_redis_up` and the readiness flag true to the link's state, reconnecting with capped
//!   exponential backoff and jitter;
//! - on shutdown marks the node draining, and once the shards are done removes its presence fields and
//!   registry entry.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use metrics::{counter, gauge};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use shards::{control, inbox::Inbox, messages::ShardMsg};
use tokio::sync::{Notify, oneshot};
use tracing::{info, warn};

use crate::{
    cluster::{NodeInfo, NodeState, NodeView, PresenceStore, Registry, now_ms},
    relay::{self, Relay},
};

mod backoff;
mod link;

use backoff::Backoff;
pub use link::BridgeLink;
use link::Event;

/// Longest a presence change waits before it is written (changes in the window are coalesced).
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Bound on one Redis operation, and on asking the shards for their users.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
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
}

impl ClusterView {
    /// True while Redis answers.
    pub fn redis_up(&self) -> bool {
        self.link.redis_up.load(Ordering::Acquire)
    }

    /// The cluster's nodes as of the last heartbeat.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.nodes.lock().map(|n| n.clone()).unwrap_or_default()
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
    let client = match redis::Client::open(config.redis_url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "invalid redis_url; cluster mode disabled");
            return;
        }
    };
    let mut state = BridgeState {
        applied: HashMap::new(),
        pending: HashMap::new(),
        channels: Default::default(),
    };
    let mut backoff = Backoff::new();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1);
        match tokio::time::timeout(
            OP_TIMEOUT * 2,
            ConnectionManager::new_with_config(client.clone(), manager_config),
        )
        .await
        {
            Ok(Ok(conn)) => {
                info!(url = %config.redis_url, "connected to Redis");
                backoff.reset();
                let ended =
                    serve(&config, &client, conn, &shared, &view, &inboxes, &mut state).await;
                if ended == Ended::Stopped {
                    return;
                }
                set_up(&view, false);
                counter!("gateway_redis_reconnects_total").increment(1);
            }
            Ok(Err(e)) => warn!(error = %e, "Redis unreachable; retrying"),
            Err(_) => warn!("Redis connect timed out; retrying"),
        }
        // While Redis is down, keep the queue from growing: remember only the latest count per user.
        drain_events(&shared.link, &mut state, None);
        let delay = backoff.next();
        counter!("gateway_redis_disconnected_ms_total").increment(delay.as_millis() as u64);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

/// What the bridge knows between connections.
struct BridgeState {
    /// Counts written to Redis, by user (count > 0 only): what shutdown removes.
    applied: HashMap<Arc<str>, u32>,
    /// Changes not yet written, latest count per user.
    pending: HashMap<Arc<str>, u64>,
    /// Channels with a subscriber on this node: the topics cross-node routing subscribes to
    /// (`gateway:ch:<name>`), kept across reconnects so they can be resubscribed.
    channels: std::collections::HashSet<Arc<str>>,
}

/// Why [`serve`] returned.
#[derive(PartialEq, Eq)]
enum Ended {
    /// Redis failed: reconnect.
    RedisFailed,
    /// Shutdown complete.
    Stopped,
}

/// Serves one Redis connection: batches, refreshes, heartbeats.
async fn serve(
    config: &BridgeConfig,
    client: &redis::Client,
    conn: ConnectionManager,
    shared: &Shared,
    view: &ClusterView,
    inboxes: &Arc<[Arc<Inbox>]>,
    state: &mut BridgeState,
) -> Ended {
    let presence_conn = conn.clone();
    let mut presence =
        PresenceStore::new(conn.clone(), config.node_id.clone(), config.presence_ttl);
    let mut registry = Registry::new(
        conn,
        config.node_id.clone(),
        config.info.clone(),
        config.node_ttl,
    );
    let relay = Relay::new(
        config.node_id.clone(),
        presence_conn,
        config.presence_ttl,
        inboxes.clone(),
    );
    let mut channel = tokio::spawn(relay::serve_channel(client.clone(), relay.clone()));
    // (Re)connected: Redis may have restarted empty; re-assert everything at once.
    if refresh(&mut presence, inboxes, state).await.is_err()
        || heartbeat(&mut registry, shared, view).await.is_err()
    {
        channel.abort();
        return Ended::RedisFailed;
    }
    set_up(view, true);
    let mut refresh_tick = tokio::time::interval(config.presence_refresh);
    let mut heartbeat_tick = tokio::time::interval(config.heartbeat_interval);
    refresh_tick.reset();
    heartbeat_tick.reset();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(
                SHUTDOWN_TIMEOUT,
                finish(&mut presence, &mut registry, shared, state),
            )
            .await;
            channel.abort();
            return Ended::Stopped;
        }
        let result = tokio::select! {
            _ = shared.link.notify.notified() => {
                // Forwards go out at once; presence changes wait for the batch window to coalesce.
                drain_events(&shared.link, state, Some(&relay));
                if !state.pending.is_empty() {
                    tokio::time::sleep(BATCH_WINDOW).await;
                }
                write_pending(&mut presence, shared, inboxes, state, Some(&relay)).await
            }
            ended = &mut channel => Err(match ended {
                Ok(Err(e)) => e,
                _ => redis::RedisError::from(std::io::Error::other("node channel subscription ended")),
            }),
            _ = refresh_tick.tick() => refresh(&mut presence, inboxes, state).await,
            _ = heartbeat_tick.tick() => heartbeat(&mut registry, shared, view).await,
            _ = shared.wake.notified() => heartbeat(&mut registry, shared, view).await,
        };
        if let Err(e) = result {
            warn!(error = %e, "Redis operation failed; reconnecting");
            counter!("gateway_redis_errors_total").increment(1);
            channel.abort();
            return Ended::RedisFailed;
        }
    }
}

/// Moves queued reports into `state.pending` (latest count per user wins) and the channel set.
fn drain_events(link: &BridgeLink, state: &mut BridgeState, relay: Option<&Arc<Relay>>) {
    while let Some(event) = link.events.pop() {
        match event {
            Event::Presence(user, conns) => {
                state.pending.insert(user, conns);
            }
            Event::Channel(channel, true) => {
                state.channels.insert(channel);
            }
            Event::Channel(channel, false) => {
                state.channels.remove(&channel);
            }
            Event::Forward {
                to,
                frame,
                local,
                origin,
            } => match relay {
                Some(relay) => relay.forward(to, frame, local, origin),
                None => link.unavailable(local, origin),
            },
        }
    }
    gauge!("gateway_cluster_channels").set(state.channels.len() as f64);
}

/// Writes the pending presence changes in pipelined batches.
async fn write_pending(
    presence: &mut PresenceStore,
    shared: &Shared,
    inboxes: &Arc<[Arc<Inbox>]>,
    state: &mut BridgeState,
    relay: Option<&Arc<Relay>>,
) -> redis::RedisResult<()> {
    drain_events(&shared.link, state, relay);
    if shared.link.overflowed.swap(false, Ordering::AcqRel) {
        return refresh(presence, inboxes, state).await;
    }
    if state.pending.is_empty() {
        return Ok(());
    }
    let batch: Vec<(Arc<str>, u32)> = state
        .pending
        .drain()
        .map(|(u, n)| (u, n.min(u32::MAX as u64) as u32))
        .collect();
    let fences = timed(presence.set_many(&batch, now_ms())).await?;
    record(&batch, &fences, state);
    Ok(())
}

/// Re-asserts every local user's presence: the periodic refresh, and the recovery after reconnects.
async fn refresh(
    presence: &mut PresenceStore,
    inboxes: &Arc<[Arc<Inbox>]>,
    state: &mut BridgeState,
) -> redis::RedisResult<()> {
    let users = owned_users(inboxes).await;
    let batch: Vec<(Arc<str>, u32)> = users
        .into_iter()
        .map(|(u, n)| (u, n.min(u32::MAX as u64) as u32))
        .collect();
    // Users this bridge wrote that no shard owns any more were missed on the way down: remove them.
    let live: std::collections::HashSet<&str> = batch.iter().map(|(u, _)| &**u).collect();
    let gone: Vec<Arc<str>> = state
        .applied
        .keys()
        .filter(|u| !live.contains(&***u))
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

/// Keeps `state.applied` in step with what Redis accepted; counts fenced writes.
fn record(batch: &[(Arc<str>, u32)], fences: &[crate::cluster::Fence], state: &mut BridgeState) {
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

/// Every user the shards own, with its connections on this node (bounded wait per shard).
async fn owned_users(inboxes: &Arc<[Arc<Inbox>]>) -> Vec<(Arc<str>, u64)> {
    let mut all = Vec::new();
    for inbox in inboxes.iter() {
        let (tx, rx) = oneshot::channel();
        let msg = ShardMsg::Invoke(Box::new(move |_, st, _| {
            let _ = tx.send(control::owned_users(st));
        }));
        if inbox.send(msg).is_err() {
            continue;
        }
        if let Ok(Ok(users)) = tokio::time::timeout(OP_TIMEOUT, rx).await {
            all.extend(users);
        }
    }
    all
}

/// One registry heartbeat (draining once shutdown began) and a fresh node list for the admin server.
async fn heartbeat(
    registry: &mut Registry,
    shared: &Shared,
    view: &ClusterView,
) -> redis::RedisResult<()> {
    let state = if shared.draining.load(Ordering::Acquire) {
        NodeState::Draining
    } else {
        NodeState::Alive
    };
    timed(registry.heartbeat(state)).await?;
    let nodes = timed(registry.list()).await?;
    if let Ok(mut cached) = view.nodes.lock() {
        *cached = nodes;
    }
    set_up(view, true);
    Ok(())
}

/// Shutdown: write what is pending, remove every presence field this node wrote, leave the registry.
async fn finish(
    presence: &mut PresenceStore,
    registry: &mut Registry,
    shared: &Shared,
    state: &mut BridgeState,
) {
    drain_events(&shared.link, state, None);
    let users: Vec<Arc<str>> = state
        .applied
        .keys()
        .chain(state.pending.keys())
        .cloned()
        .collect();
    match presence.remove_node(&users, now_ms()).await {
        Ok(_) => info!(users = users.len(), "removed this node's presence"),
        Err(e) => warn!(error = %e, "could not remove presence; it expires with the TTL"),
    }
    if let Err(e) = registry.remove().await {
        warn!(error = %e, "could not leave the registry; the entry expires with the TTL");
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
        let mut state = BridgeState {
            applied: HashMap::new(),
            pending: HashMap::new(),
            channels: Default::default(),
        };
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
