//! Settings of the data plane, as plain data.
//!
//! The `gateway` crate reads files, environment and flags and fills this struct; the data plane never
//! sees where a value came from. Defaults are those of the embedded single-node gateway.

use std::{sync::Arc, time::Duration};

use crate::auth::AuthMode;

/// What a shard does with the messages it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Protocol v1: identify, send, subscribe, publish, presence (docs/PROTOCOL.md).
    Protocol,
    /// Raw echo: every text and binary message goes back to its sender, through the same shards,
    /// connection tasks and frame codec as protocol mode, with no protocol (or identify) on top. For
    /// comparing the transport with other WebSocket servers.
    Echo,
}

/// Everything a shard needs to know; shared read-only by all shards.
#[derive(Clone)]
pub struct ShardConfig {
    /// Protocol or raw echo.
    pub mode: Mode,
    /// This node's id, reported in `ready` frames.
    pub node_id: Arc<str>,
    /// Number of shards (one per core).
    pub shards: usize,
    /// Cores to pin shards to, in order; shorter than `shards` or empty: shards are not pinned past it.
    pub cpus: Vec<usize>,
    /// glommio io_memory per shard, in bytes (registered, so it counts against RLIMIT_MEMLOCK).
    pub io_memory_bytes: usize,
    /// How the shard's ring reads sockets (multishot receive where the kernel has it, or the poll path).
    pub recv: crate::uring::shard_io::RecvChoice,
    /// The best ring setup to try (lower ones follow when the kernel refuses it).
    pub ring: crate::uring::Flavor,
    /// Buffers in each shard's provided buffer ring (16 B each charged to RLIMIT_MEMLOCK).
    pub recv_buffers: u16,
    /// Bytes per provided buffer.
    pub recv_buffer_bytes: usize,
    /// Time allowed for the HTTP upgrade; then the TCP connection is closed.
    pub handshake_timeout: Duration,
    /// Largest HTTP request head accepted in the upgrade (431 beyond).
    pub max_header_bytes: usize,
    /// Allowed `Origin` values; empty: any.
    pub allowed_origins: Vec<String>,
    /// Largest frame payload (close 1009 beyond).
    pub max_frame_bytes: usize,
    /// Largest message (close 1009 beyond).
    pub max_message_bytes: usize,
    /// Most frames in one fragmented message (close 1009 beyond).
    pub max_fragments: usize,
    /// Bound on bytes queued towards one client (close 4008 beyond).
    pub outbound_queue_bytes: usize,
    /// Messages per second per connection; 0: no limit.
    pub rate_limit_per_sec: u32,
    /// Burst of the per-connection token bucket.
    pub rate_limit_burst: u32,
    /// Channels one connection may subscribe to.
    pub max_subscriptions: usize,
    /// Open connections one client address may hold across the node (1013 beyond); 0: no limit.
    pub max_connections_per_ip: u32,
    /// WebSocket pings per second one connection may send (close 1008 beyond); 0: no limit.
    pub max_pings_per_sec: u32,
    /// Identified connections one user may hold on this node (the next identify gets error
    /// `too_many_connections` and close 1008); 0: no limit.
    pub max_connections_per_user: u32,
    /// New TCP connections per second the node accepts, split over its shards (503 beyond, before
    /// the upgrade); 0: no limit.
    pub max_connects_per_sec: u32,
    /// Interval of server pings.
    pub heartbeat_interval: Duration,
    /// Silence after which a connection is closed with 4009.
    pub heartbeat_timeout: Duration,
    /// Time allowed between upgrade and identify (close 4001 beyond).
    pub auth_timeout: Duration,
    /// How identities are checked.
    pub auth: Arc<AuthMode>,
    /// What identified connections may do (channel rules, `client_send`).
    pub access: Arc<crate::access::Access>,
    /// Time a closing connection has to flush and finish the close handshake.
    pub close_grace: Duration,
    /// Slots in each shard's cross-shard inbox.
    pub inbox_capacity: usize,
    /// Per-user message history (seq, epoch, resume); channels use the same limits.
    pub history: crate::history::HistoryConfig,
    /// Channels that keep history (subscribe with `since`); none by default.
    pub channel_history: crate::history::patterns::ChannelPatterns,
    /// Where owner shards report presence and channel interest in cluster mode; `None`: embedded.
    pub cluster: Option<Arc<dyn crate::cluster::ClusterLink>>,
    /// The Pusher apps served on `/app/{key}` and `/apps/{id}/...`; none: those answer as unknown.
    pub pusher: Arc<crate::pusher::apps::Apps>,
    /// Where webhook events go; `None`: no webhook is configured.
    pub webhooks: Option<Arc<dyn crate::webhooks::WebhookSink>>,
}

impl ShardConfig {
    /// The embedded defaults for `shards` shards.
    pub fn new(node_id: &str, shards: usize) -> Self {
        ShardConfig {
            mode: Mode::Protocol,
            node_id: node_id.into(),
            shards,
            cpus: Vec::new(),
            io_memory_bytes: 512 * 1024,
            recv: Default::default(),
            ring: Default::default(),
            recv_buffers: 1024,
            recv_buffer_bytes: 4096,
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 8192,
            allowed_origins: Vec::new(),
            max_frame_bytes: 64 * 1024,
            max_message_bytes: 64 * 1024,
            max_fragments: 1024,
            outbound_queue_bytes: 1024 * 1024,
            rate_limit_per_sec: 100,
            rate_limit_burst: 200,
            max_subscriptions: 256,
            max_connections_per_ip: 0,
            max_pings_per_sec: 10,
            max_connections_per_user: 0,
            max_connects_per_sec: 0,
            heartbeat_interval: Duration::from_secs(25),
            heartbeat_timeout: Duration::from_secs(50),
            auth_timeout: Duration::from_secs(10),
            auth: Arc::new(AuthMode::Dev),
            access: Arc::new(crate::access::Access::open()),
            close_grace: Duration::from_secs(5),
            inbox_capacity: 65536,
            history: crate::history::HistoryConfig::default(),
            channel_history: Default::default(),
            cluster: None,
            pusher: Default::default(),
            webhooks: None,
        }
    }

    /// Granularity of the timer wheel: fine enough for the shortest configured timeout.
    pub fn tick(&self) -> Duration {
        let shortest = [
            self.heartbeat_interval,
            self.heartbeat_timeout,
            self.auth_timeout,
            self.handshake_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1));
        (shortest / 8).clamp(Duration::from_millis(5), Duration::from_millis(500))
    }
}
