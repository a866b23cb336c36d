//! Node start-up and shutdown: from a [`Config`] to running shards, an admin server and a clean exit.
//!
//! Order matters: limits are read first (they size the connection cap and glommio's io_memory), the
//! metrics recorder is installed before any shard registers a handle, listeners are bound before the
//! shards start (so port 0 resolves once), and signal handlers are in place before anything can accept.
//! Shutdown is the paced drain of [`crate::drain`].

use std::{error::Error, fs, io::Write, net::TcpListener, sync::Arc, time::Duration};

use metrics_exporter_prometheus::PrometheusBuilder;
use shards::{
    DataPlane, NodeStatus, ShardConfig,
    auth::{AuthMode, JwtVerifier},
    config::Mode,
    listener::bind_reuseport,
    runtime::{allowed_cpus, io_memory_for},
};
use signal_hook::{
    consts::{SIGINT, SIGTERM},
    iterator::Signals,
};
use tracing::{info, warn};

use crate::{
    admin, api,
    bridge::{Bridge, BridgeConfig, BridgeLink},
    cluster::{NodeInfo, NodeStats, now_ms},
    config::Config,
    drain::{self, DrainSwitch, Trigger},
    limits::ProcessLimits,
};

/// Runs a node (protocol or raw echo `mode`) until SIGTERM or SIGINT, then shuts it down; returns when
/// every shard has stopped.
pub fn serve(config: Config, mode: Mode) -> Result<(), Box<dyn Error>> {
    let limits = ProcessLimits::read_and_raise()?;
    let cpus = allowed_cpus();
    let shards = if config.shards == 0 {
        cpus.len().max(1)
    } else {
        config.shards
    };
    let capacity = limits.connection_capacity(shards);
    let max_connections = match config.max_connections {
        0 => capacity,
        n if n > capacity => {
            warn!(
                configured = n,
                capacity,
                nofile = limits.nofile,
                "max_connections exceeds what the open-file limit allows; capping"
            );
            capacity
        }
        n => n,
    };
    let node_id = config.node_id_or_default();
    let mut shard_config = shard_config(&config, &node_id, shards, &cpus, &limits)?;
    shard_config.mode = mode;
    let webhooks = crate::webhooks::spawn(&config)?;
    if let Some(w) = &webhooks {
        shard_config.webhooks = Some(w.clone());
    }
    let link = (!config.redis_url.is_empty()).then(|| Arc::new(BridgeLink::new()));
    if let Some(link) = &link {
        shard_config.cluster = Some(link.clone());
    }

    let recorder = PrometheusBuilder::new().build_recorder();
    let metrics_handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| format!("metrics recorder: {e}"))?;
    metrics::gauge!("gateway_connections_max").set(max_connections as f64);
    metrics::gauge!("gateway_shards").set(shards as f64);

    let (fds, ws_addr) = bind_reuseport(
        config.listen,
        shards,
        config.backlog.min(i32::MAX as u32) as i32,
    )
    .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let admin_listener = TcpListener::bind(config.admin)
        .map_err(|e| format!("cannot listen on {}: {e}", config.admin))?;
    let admin_addr = admin_listener.local_addr()?;
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let (trigger_tx, triggers) = std::sync::mpsc::channel();
    let drain_switch = Arc::new(DrainSwitch::new(trigger_tx.clone()));
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if trigger_tx.send(Trigger::Signal(signal)).is_err() {
                    break;
                }
            }
        })?;

    let status = Arc::new(NodeStatus::new(shards, max_connections));
    drain_switch.set_status(status.clone());
    let plane = DataPlane::start(shard_config, fds, status.clone())?;
    let bridge = match link {
        Some(link) => {
            let c = &config.cluster;
            let bridge_config = BridgeConfig {
                redis_url: config.redis_url.clone(),
                node_id: node_id.clone(),
                info: NodeInfo {
                    ws: ws_addr.to_string(),
                    admin: admin_addr.to_string(),
                    started_ms: now_ms(),
                },
                presence_ttl: Duration::from_millis(c.presence_ttl_ms),
                presence_refresh: Duration::from_millis(c.presence_refresh_ms),
                heartbeat_interval: Duration::from_millis(c.heartbeat_interval_ms),
                node_ttl: Duration::from_millis(c.node_ttl_ms),
                require_for_ready: c.require_redis_for_ready,
                history: config.history.to_shards(),
                webhook_grace: Duration::from_millis(config.webhook_delivery.grace_ms),
                webhooks: webhooks
                    .clone()
                    .map(|w| w as Arc<dyn shards::webhooks::WebhookSink>),
                stats: {
                    let status = status.clone();
                    Arc::new(move || NodeStats {
                        connections: status.connections() as u64,
                        shards: status.shards() as u64,
                    })
                },
            };
            Some(Bridge::spawn(bridge_config, link, plane.inboxes().clone())?)
        }
        None => None,
    };
    let cluster_view = bridge.as_ref().map(Bridge::view);
    admin::spawn(
        admin_listener,
        admin::AdminState {
            status: status.clone(),
            metrics: metrics_handle,
            node_id: node_id.clone(),
            api: Some(Arc::new(api::Api::new(
                plane.inboxes().clone(),
                &config.api.key,
                cluster_view.clone(),
                Some(drain_switch),
            ))),
            cluster: cluster_view,
        },
    )?;

    let io_memory = match config.runtime.io_memory_bytes {
        0 => io_memory_for(limits.memlock, shards),
        n => n,
    };
    // What the shards lock: glommio's io_memory on each of its three rings, and each shard's own ring
    // with its buffer ring's entries (`gateway check` counts the same).
    let locked = shards
        * (3 * io_memory
            + shards::uring::Uring::memlock_bytes()
            + shards::uring::bufring::BufRing::memlock_bytes(config.runtime.recv_buffers));
    info!(
        ws = %ws_addr, admin = %admin_addr, shards, node = %node_id, max_connections,
        nofile = limits.nofile, memlock = ?limits.memlock, locked, "gateway listening"
    );
    if !config.pusher.apps.is_empty() {
        let ids: Vec<&str> = config.pusher.apps.iter().map(|a| a.id.as_str()).collect();
        info!(apps = ?ids, "Pusher protocol on /app/{{key}}, its HTTP API on /apps/{{id}}/... (same port)");
    }
    if webhooks.is_some() {
        let pusher = config
            .pusher
            .apps
            .iter()
            .map(|a| a.webhooks.len())
            .sum::<usize>();
        info!(v1 = config.webhooks.len(), pusher, "webhooks on");
    }
    if mode == Mode::Protocol && !config.auth.jwt_enabled() && !ws_addr.ip().is_loopback() {
        warn!(
            ws = %ws_addr,
            "dev mode on a non-loopback address: identify trusts any user name and every channel \
             is open; set auth.jwt_hs256_secret or auth.jwt_rs256_public_key_file before exposing \
             it (docs/SECURITY.md)"
        );
    }
    if max_connections < 1000 {
        warn!(
            nofile = limits.nofile,
            max_connections,
            "the open-file limit allows few connections; raise LimitNOFILE (see tuning/TUNING.md)"
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "gateway listening ws={ws_addr} admin={admin_addr} shards={shards} node={node_id} max_connections={max_connections} nofile={}",
        limits.nofile
    )?;
    out.flush()?;
    drop(out);

    let first = triggers.recv();
    info!(
        trigger = ?first.ok(),
        delay_ms = config.shutdown.drain_delay_ms,
        window_ms = config.shutdown.drain_window_ms,
        "draining: readiness off; listeners close after the delay, connections over the window"
    );
    status.begin_shutdown();
    if let Some(bridge) = &bridge {
        bridge.draining();
    }
    let open = {
        let status = status.clone();
        move || status.connections()
    };
    drain::run(&config.shutdown, triggers, plane.inboxes(), open);
    plane.join();
    if let Some(bridge) = bridge {
        bridge.stop();
    }
    info!("stopped");
    Ok(())
}

/// The data plane's settings from the node configuration.
fn shard_config(
    config: &Config,
    node_id: &str,
    shards: usize,
    cpus: &[usize],
    limits: &ProcessLimits,
) -> Result<ShardConfig, Box<dyn Error>> {
    let mut sc = ShardConfig::new(node_id, shards);
    // Pin one shard per allowed core while there are cores; extra shards float.
    sc.cpus = cpus.iter().copied().take(shards).collect();
    sc.io_memory_bytes = match config.runtime.io_memory_bytes {
        0 => io_memory_for(limits.memlock, shards),
        n => n,
    };
    sc.handshake_timeout = config.websocket.handshake_timeout();
    sc.max_header_bytes = config.websocket.max_header_bytes;
    sc.allowed_origins = config.websocket.allowed_origins.clone();
    sc.max_frame_bytes = config.websocket.max_frame_bytes;
    sc.max_message_bytes = config.websocket.max_message_bytes;
    sc.max_fragments = config.websocket.max_fragments;
    sc.outbound_queue_bytes = config.limits.outbound_queue_bytes;
    sc.rate_limit_per_sec = config.limits.rate_limit_per_sec;
    sc.rate_limit_burst = config.limits.rate_limit_burst;
    sc.max_subscriptions = config.limits.max_subscriptions;
    sc.history = config.history.to_shards();
    sc.channel_history = config.history.channel_patterns();
    sc.max_connections_per_ip = config.limits.max_connections_per_ip;
    sc.max_pings_per_sec = config.limits.max_pings_per_sec;
    sc.heartbeat_interval = config.heartbeat.interval();
    sc.heartbeat_timeout = config.heartbeat.timeout();
    sc.auth_timeout = config.auth.timeout();
    sc.close_grace = config.shutdown.close_grace();
    sc.inbox_capacity = config.runtime.inbox_capacity;
    sc.recv = config.runtime.recv.to_shards();
    sc.ring = config.runtime.ring_flags.to_shards();
    sc.recv_buffers = config.runtime.recv_buffers;
    sc.recv_buffer_bytes = config.runtime.recv_buffer_bytes;
    sc.auth = Arc::new(auth_mode(config)?);
    sc.access = Arc::new(crate::config::channels::access(
        &config.channels,
        &config.auth.client_send,
        config.auth.jwt_enabled(),
    )?);
    sc.max_connections_per_user = config.limits.max_connections_per_user;
    sc.max_connects_per_sec = config.limits.max_connects_per_sec;
    let apps = config.pusher.apps.iter().map(|a| a.to_shards()).collect();
    sc.pusher = Arc::new(shards::pusher::apps::Apps::new(apps));
    Ok(sc)
}

/// Dev mode, or JWT mode with the configured keys.
fn auth_mode(config: &Config) -> Result<AuthMode, Box<dyn Error>> {
    if !config.auth.jwt_enabled() {
        return Ok(AuthMode::Dev);
    }
    let secret = (!config.auth.jwt_hs256_secret.is_empty())
        .then_some(config.auth.jwt_hs256_secret.as_bytes());
    let path = &config.auth.jwt_rs256_public_key_file;
    let pem = if path.as_os_str().is_empty() {
        None
    } else {
        Some(fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?)
    };
    let verifier =
        JwtVerifier::new(secret, pem.as_deref()).map_err(|e| format!("JWT keys: {e}"))?;
    Ok(AuthMode::Jwt(verifier))
}
