//! Node configuration: the TOML file's keys, their defaults, and how the final value of each is chosen.
//!
//! Precedence is built-in defaults < TOML file < `GATEWAY_*` environment variables < CLI flags. This module
//! does the first three ([`Config::load`]); the CLI layer sets fields afterwards and calls
//! [`Config::validate`] again. An unknown key is an error at every layer, so a typo never silently falls
//! back to a default. [`Config::default`] is the embedded single-node gateway. The operator's view of every
//! key is `docs/CONFIGURATION.md`; `gateway.example.toml` is the full default file.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use runtime::{RecvMode, RingFlags, RuntimeSection};

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "GATEWAY_";
/// Reserved for the log filter (tracing `EnvFilter` syntax); never a config key.
pub const LOG_ENV: &str = "GATEWAY_LOG";

/// Longest accepted `node_id`, in bytes.
const MAX_NODE_ID_BYTES: usize = 128;
/// Smallest accepted `websocket.max_header_bytes`: a minimal upgrade request is about 200 bytes.
const MIN_HEADER_BYTES: usize = 256;
/// Smallest accepted frame and message limit: the largest control-frame payload RFC 6455 allows.
const MIN_PAYLOAD_BYTES: usize = 125;

/// The whole node configuration. Field names are the TOML keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Name of this node in `ready` replies and logs. Default `""`: `<hostname>-<pid>-<4 hex digits>`
    /// (see [`Config::node_id_or_default`]).
    pub node_id: String,
    /// WebSocket listen address. Default `0.0.0.0:8080`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Admin HTTP listen address (`/healthz`, `/readyz`, `/metrics`). Default `0.0.0.0:9090`.
    pub admin: SocketAddr,
    /// Number of shards (one thread pinned per core each). Default 0: one per CPU the process may run on.
    pub shards: usize,
    /// TCP accept backlog per listening socket, in connections. Default 65535 (the kernel caps it at
    /// `net.core.somaxconn`).
    pub backlog: u32,
    /// Node-wide cap on open client connections. Default 0: soft `RLIMIT_NOFILE` minus a reserve.
    pub max_connections: usize,
    /// Redis for cluster mode, e.g. `redis://10.0.0.7:6379/0`. Default `""`: the embedded single-node
    /// gateway, no Redis.
    pub redis_url: String,
    /// Cluster mode timings (used only with `redis_url`).
    pub cluster: ClusterSection,
    /// WebSocket handshake and framing limits.
    pub websocket: WebSocketSection,
    /// Per-connection resource limits.
    pub limits: LimitsSection,
    /// Server pings and the idle timeout.
    pub heartbeat: HeartbeatSection,
    /// Identify step and JWT keys.
    pub auth: AuthSection,
    /// Graceful shutdown.
    pub shutdown: ShutdownSection,
    /// Per-user message history for resume.
    pub history: HistorySection,
    /// Runtime (glommio) sizing.
    pub runtime: RuntimeSection,
    /// HTTP API for backends on the admin port.
    pub api: ApiSection,
    /// `[channels]`: who may subscribe, publish, read presence and history, by channel family.
    pub channels: channels::ChannelsSection,
    /// `[pusher]`: the Pusher apps served on `/app/{key}` and `/apps/{id}/...`.
    pub pusher: pusher::PusherSection,
    /// `[[webhooks]]`: protocol v1 webhook targets (file only).
    pub webhooks: Vec<webhooks::GatewayWebhook>,
    /// `[webhook_delivery]`: grace, batching and retries of every webhook.
    pub webhook_delivery: webhooks::DeliverySection,
}

/// `[cluster]`: presence and node registry in Redis (only with `redis_url`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// Life of a node's presence entry for a user without a refresh, in milliseconds: a crashed node's
    /// users disappear after it. Default 90000.
    pub presence_ttl_ms: u64,
    /// Interval at which a node re-asserts the presence of all its users, in milliseconds; must be below
    /// `presence_ttl_ms`. Default 30000.
    pub presence_refresh_ms: u64,
    /// Interval of registry heartbeats, in milliseconds. Default 5000.
    pub heartbeat_interval_ms: u64,
    /// Life of a node's alive key without a heartbeat, in milliseconds (then the node shows as dead);
    /// must exceed `heartbeat_interval_ms`. Default 15000.
    pub node_ttl_ms: u64,
    /// When true, `/readyz` fails while Redis is unreachable; when false (default) the node stays ready
    /// and serves local traffic, and only reports the state (`gateway_redis_up`, logs).
    pub require_redis_for_ready: bool,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            presence_ttl_ms: 90_000,
            presence_refresh_ms: 30_000,
            heartbeat_interval_ms: 5_000,
            node_ttl_ms: 15_000,
            require_redis_for_ready: false,
        }
    }
}

/// `[api]`: the HTTP API for backends (`/v1/...` on the admin port). `Debug` redacts the key.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Bearer key every `/v1/` request must present (`Authorization: Bearer <key>`). Default `""`: no
    /// key, the API is open to whoever reaches the admin port (bind it to a private address).
    pub key: String,
}

impl fmt::Debug for ApiSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("ApiSection").field("key", &key).finish()
    }
}

/// `[websocket]`: handshake and framing limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSection {
    /// Time from accept to a completed upgrade, in milliseconds; then the TCP connection is closed.
    /// Default 10000.
    pub handshake_timeout_ms: u64,
    /// Largest HTTP upgrade request head, in bytes; larger gets 431. Default 8192, minimum 256.
    pub max_header_bytes: usize,
    /// Largest single frame payload, in bytes; larger closes with 1009. Default 65536, minimum 125.
    pub max_frame_bytes: usize,
    /// Largest reassembled message, in bytes; larger closes with 1009. Default 65536, minimum 125.
    pub max_message_bytes: usize,
    /// Most frames in one fragmented message; more closes with 1009. Default 1024, minimum 1.
    pub max_fragments: usize,
    /// Accepted `Origin` header values (exact match). Default empty: any Origin, or none, is accepted.
    pub allowed_origins: Vec<String>,
}

/// `[limits]`: per-connection resource limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Bytes queued for a client that does not read before it is closed with 4008. Default 1048576.
    pub outbound_queue_bytes: usize,
    /// Sustained data frames per second per connection. Default 100; 0 disables the rate limit.
    pub rate_limit_per_sec: u32,
    /// Token-bucket size, in frames, allowed in a burst. Default 200; at least 1 when the limit is on.
    pub rate_limit_burst: u32,
    /// Channels one connection may be subscribed to at once. Default 256.
    pub max_subscriptions: usize,
    /// Open connections one client address (IPv6: one /64) may hold on the node; past it the upgrade
    /// completes and the server closes with 1013. Default 0: no limit (behind a load balancer every
    /// connection comes from the balancer's address).
    pub max_connections_per_ip: u32,
    /// WebSocket pings one connection may send per second (counted per second); over it the server
    /// closes with 1008. Pongs are not counted. Default 10; 0 disables the limit.
    pub max_pings_per_sec: u32,
    /// Identified connections one user may hold on this node; the next `identify` gets error
    /// `too_many_connections` and close 1008. Default 0: no limit.
    pub max_connections_per_user: u32,
    /// New TCP connections per second this node accepts (a token bucket with one second of burst,
    /// split evenly over the shards); past it the upgrade is answered `503` with `Retry-After` before
    /// any WebSocket state exists. Default 0: no limit.
    pub max_connects_per_sec: u32,
}

/// `[heartbeat]`: server pings and the idle timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatSection {
    /// Interval between server pings, in milliseconds. Default 25000.
    pub interval_ms: u64,
    /// Silence from the client after which it is closed with 4009, in milliseconds; must exceed
    /// `interval_ms`. Default 50000.
    pub timeout_ms: u64,
}

/// `[auth]`: identify step and JWT keys. `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// Time allowed between the upgrade and a successful `identify`, in milliseconds; then close 4001.
    /// Default 10000.
    pub timeout_ms: u64,
    /// Shared HS256 secret. Default `""`; non-empty turns on JWT mode.
    pub jwt_hs256_secret: String,
    /// PEM file with the RS256 public key, relative to the working directory. Default `""`; non-empty
    /// turns on JWT mode. Both keys may be set.
    pub jwt_rs256_public_key_file: PathBuf,
    /// Who may send direct messages: `any`, `grant` (JWT claim `send_to`), `none` (HTTP API only).
    /// Default `""`: `any` in dev mode, `none` in JWT mode.
    pub client_send: String,
}

/// `[shutdown]`: graceful shutdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSection {
    /// Time a closing connection gets to flush and finish the close handshake, in milliseconds.
    /// Default 5000; 0 closes without waiting.
    pub close_grace_ms: u64,
    /// Time between readiness turning 503 and the listeners closing, for load balancers to take the
    /// node out of rotation, in milliseconds. Default 5000.
    pub drain_delay_ms: u64,
    /// Time over which open connections are closed (1012) once the listeners closed, in milliseconds;
    /// whatever is still open at its end is closed at once. Default 30000.
    pub drain_window_ms: u64,
    /// Time between two batches of closes, in milliseconds. Default 100.
    pub drain_interval_ms: u64,
    /// Connections closed per interval by the whole node. Default 0: spread evenly over the window
    /// (open connections × interval / window, rounded up).
    pub drain_batch: u64,
    /// Upper bound of the reconnect hint in a drain's 1012 close reason, in milliseconds; each client
    /// gets a uniform value in 0..=this. Default 5000.
    pub reconnect_hint_max_ms: u64,
}

/// `[history]`: per-user message history, for `seq`/`epoch` on messages and resume after reconnect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySection {
    /// Messages kept per user. Default 500; 0 turns history off (no `seq`, offline sends are `offline`).
    pub max_messages: usize,
    /// Age after which a kept message is dropped, in milliseconds. Default 300000 (5 minutes).
    pub max_age_ms: u64,
    /// Channels that keep history too (same limits, per channel), as name patterns where `*` is any
    /// run of characters: `["room:*"]`. Default none: publications are at most once.
    pub channels: Vec<String>,
}

impl Default for HistorySection {
    fn default() -> Self {
        HistorySection {
            max_messages: 500,
            max_age_ms: 300_000,
            channels: Vec::new(),
        }
    }
}

impl HistorySection {
    /// The channel patterns, in the data plane's form.
    pub fn channel_patterns(&self) -> shards::history::patterns::ChannelPatterns {
        shards::history::patterns::ChannelPatterns::new(&self.channels)
    }

    /// The data plane's form.
    pub fn to_shards(&self) -> shards::history::HistoryConfig {
        shards::history::HistoryConfig {
            max_messages: self.max_messages,
            max_age: Duration::from_millis(self.max_age_ms),
        }
    }
}

/// Longest channel pattern (the longest channel name).
pub const MAX_CHANNEL_PATTERN_BYTES: usize = 128;

/// Most channel patterns (each publication is checked against every one).
pub const MAX_CHANNEL_PATTERNS: usize = 64;

/// Most messages kept per user (a resume replays at most this many in one go).
pub const MAX_HISTORY_MESSAGES: usize = 100_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: String::new(),
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin: SocketAddr::from(([0, 0, 0, 0], 9090)),
            shards: 0,
            backlog: 65535,
            max_connections: 0,
            redis_url: String::new(),
            cluster: ClusterSection::default(),
            websocket: WebSocketSection::default(),
            limits: LimitsSection::default(),
            heartbeat: HeartbeatSection::default(),
            auth: AuthSection::default(),
            shutdown: ShutdownSection::default(),
            history: HistorySection::default(),
            runtime: RuntimeSection::default(),
            api: ApiSection::default(),
            channels: channels::ChannelsSection::default(),
            pusher: pusher::PusherSection::default(),
            webhooks: Vec::new(),
            webhook_delivery: webhooks::DeliverySection::default(),
        }
    }
}

impl Default for WebSocketSection {
    fn default() -> Self {
        WebSocketSection {
            handshake_timeout_ms: 10_000,
            max_header_bytes: 8192,
            max_frame_bytes: 65536,
            max_message_bytes: 65536,
            max_fragments: 1024,
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            outbound_queue_bytes: 1 << 20,
            rate_limit_per_sec: 100,
            rate_limit_burst: 200,
            max_subscriptions: 256,
            max_connections_per_ip: 0,
            max_pings_per_sec: 10,
            max_connections_per_user: 0,
            max_connects_per_sec: 0,
        }
    }
}

impl Default for HeartbeatSection {
    fn default() -> Self {
        HeartbeatSection {
            interval_ms: 25_000,
            timeout_ms: 50_000,
        }
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            timeout_ms: 10_000,
            jwt_hs256_secret: String::new(),
            jwt_rs256_public_key_file: PathBuf::new(),
            client_send: String::new(),
        }
    }
}

impl Default for ShutdownSection {
    fn default() -> Self {
        ShutdownSection {
            close_grace_ms: 5000,
            drain_delay_ms: 5000,
            drain_window_ms: 30000,
            drain_interval_ms: 100,
            drain_batch: 0,
            reconnect_hint_max_ms: 5000,
        }
    }
}

impl fmt::Debug for AuthSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.jwt_hs256_secret.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("AuthSection")
            .field("timeout_ms", &self.timeout_ms)
            .field("jwt_hs256_secret", &secret)
            .field("jwt_rs256_public_key_file", &self.jwt_rs256_public_key_file)
            .field("client_send", &self.client_send)
            .finish()
    }
}

impl WebSocketSection {
    /// `handshake_timeout_ms` as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

impl HeartbeatSection {
    /// `interval_ms` as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// `timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl AuthSection {
    /// `timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// True when a JWT key is configured (JWT mode); false means dev mode (`identify` with `user`).
    pub fn jwt_enabled(&self) -> bool {
        !self.jwt_hs256_secret.is_empty() || !self.jwt_rs256_public_key_file.as_os_str().is_empty()
    }
}

impl ShutdownSection {
    /// `close_grace_ms` as a duration.
    pub fn close_grace(&self) -> Duration {
        Duration::from_millis(self.close_grace_ms)
    }

    /// The whole node's batch per interval for `open` connections: the configured one, or (0) an even
    /// spread over the window.
    pub fn drain_batch_for(&self, open: usize) -> usize {
        if self.drain_batch > 0 {
            return self.drain_batch as usize;
        }
        let intervals = (self.drain_window_ms / self.drain_interval_ms.max(1)).max(1) as usize;
        open.div_ceil(intervals).max(1)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The config file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The config file is not valid TOML, has an unknown key, or a value of the wrong type.
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line, column and snippet).
        message: String,
    },
    /// A `GATEWAY_*` variable matches no key or has a value of the wrong type.
    Env {
        /// The variable name.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// Values that parse but make no sense, one message per problem.
    Invalid(Vec<String>),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Parse { path, message } => {
                write!(f, "invalid config file {}: {message}", path.display())
            }
            ConfigError::Env { var, message } => write!(f, "environment variable {var}: {message}"),
            ConfigError::Invalid(problems) => {
                write!(f, "invalid configuration: {}", problems.join("; "))
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Config {
    /// Defaults, then `file` (if any), then the `GATEWAY_*` entries of `env`, then [`Config::validate`].
    ///
    /// Pass `std::env::vars()` as `env` in the binary. `GATEWAY_LOG` is skipped (log filter); any other
    /// `GATEWAY_*` name that matches no key is an error.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Defaults overridden by the keys present in the TOML file at `path` (not validated).
    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The configured `node_id`, or `<hostname>-<pid>-<4 hex digits>` when it is empty. The random
    /// suffix keeps a restarted process apart from its predecessor even where the pid repeats (a
    /// container's main process is always pid 1): the cluster keys presence, channel members and node
    /// channels by this id, and a dead predecessor's entries must expire as its own.
    pub fn node_id_or_default(&self) -> String {
        if self.node_id.is_empty() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let suffix = (nanos ^ (nanos >> 17)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48;
            format!("{}-{}-{suffix:04x}", hostname(), std::process::id())
        } else {
            self.node_id.clone()
        }
    }
}

/// This machine's host name: `/proc/sys/kernel/hostname`, else `gethostname(2)`, else `localhost`.
fn hostname() -> String {
    if let Ok(name) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            return name.to_owned();
        }
    }
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes and gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if rc == 0 && !name.trim().is_empty() => name.trim().to_owned(),
        _ => "localhost".to_owned(),
    }
}

pub mod channels;
mod env;
pub mod pusher;
pub mod runtime;
mod validate;
pub mod webhooks;

#[cfg(test)]
mod tests;
