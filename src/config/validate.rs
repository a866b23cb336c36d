//! The checks of values that parse but cannot work, all reported at once.

use super::*;
use crate::bridge::{
    cluster_target::{CLUSTER_SCHEME, parse_cluster_url},
    target::{SENTINEL_SCHEME, parse_sentinel_url},
};

impl Config {
    /// Checks values that parse but cannot work; reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        let id = &self.node_id;
        check(
            id.len() <= MAX_NODE_ID_BYTES
                && !id.chars().any(|c| c.is_whitespace() || c.is_control()),
            format!(
                "node_id {id:?} must be at most {MAX_NODE_ID_BYTES} bytes without spaces or control characters"
            ),
        );
        let (l, a) = (self.listen, self.admin);
        check(
            l.port() == 0
                || l.port() != a.port()
                || (l.ip() != a.ip() && !l.ip().is_unspecified() && !a.ip().is_unspecified()),
            format!("listen ({l}) and admin ({a}) must not use the same address"),
        );
        check(self.backlog >= 1, "backlog must be at least 1".into());
        let sd = &self.shutdown;
        check(
            sd.drain_interval_ms > 0 && sd.drain_interval_ms <= sd.drain_window_ms.max(1),
            "shutdown.drain_interval_ms must be greater than 0 and at most drain_window_ms".into(),
        );
        let h = &self.history;
        check(
            h.max_messages <= MAX_HISTORY_MESSAGES,
            format!("history.max_messages must be at most {MAX_HISTORY_MESSAGES}"),
        );
        check(
            h.max_messages == 0 || h.max_age_ms > 0,
            "history.max_age_ms must be greater than 0 while history is on".into(),
        );
        check(
            h.channels
                .iter()
                .all(|p| !p.is_empty() && p.len() <= MAX_CHANNEL_PATTERN_BYTES),
            format!(
                "history.channels entries must be 1 to {MAX_CHANNEL_PATTERN_BYTES} bytes (a channel name, `*` for any run)"
            ),
        );
        check(
            h.channels.len() <= MAX_CHANNEL_PATTERNS,
            format!("history.channels holds at most {MAX_CHANNEL_PATTERNS} patterns"),
        );
        let ws = &self.websocket;
        check(
            ws.handshake_timeout_ms > 0,
            "websocket.handshake_timeout_ms must be greater than 0".into(),
        );
        check(
            ws.max_header_bytes >= MIN_HEADER_BYTES,
            format!(
                "websocket.max_header_bytes ({}) must be at least {MIN_HEADER_BYTES}",
                ws.max_header_bytes
            ),
        );
        for (key, value) in [
            ("max_frame_bytes", ws.max_frame_bytes),
            ("max_message_bytes", ws.max_message_bytes),
        ] {
            check(
                value >= MIN_PAYLOAD_BYTES,
                format!("websocket.{key} ({value}) must be at least {MIN_PAYLOAD_BYTES}"),
            );
        }
        check(
            ws.max_fragments >= 1,
            "websocket.max_fragments must be at least 1".into(),
        );
        check(
            ws.allowed_origins.iter().all(|o| !o.trim().is_empty()),
            "websocket.allowed_origins must not contain an empty entry".into(),
        );
        let lim = &self.limits;
        check(
            lim.outbound_queue_bytes > 0,
            "limits.outbound_queue_bytes must be greater than 0".into(),
        );
        check(
            lim.rate_limit_per_sec == 0 || lim.rate_limit_burst >= 1,
            "limits.rate_limit_burst must be at least 1 when limits.rate_limit_per_sec is not 0"
                .into(),
        );
        check(
            lim.max_subscriptions > 0,
            "limits.max_subscriptions must be greater than 0".into(),
        );
        let hb = &self.heartbeat;
        check(
            hb.interval_ms > 0,
            "heartbeat.interval_ms must be greater than 0".into(),
        );
        check(
            hb.timeout_ms > hb.interval_ms,
            format!(
                "heartbeat.timeout_ms ({}) must be greater than heartbeat.interval_ms ({})",
                hb.timeout_ms, hb.interval_ms
            ),
        );
        check(
            self.auth.timeout_ms > 0,
            "auth.timeout_ms must be greater than 0".into(),
        );
        // A connection's record keeps its moments in 32 bits (shards::conn::stamp).
        let max_span = shards::conn::stamp::MAX_SPAN_MS;
        for (key, value) in [
            ("websocket.handshake_timeout_ms", ws.handshake_timeout_ms),
            ("auth.timeout_ms", self.auth.timeout_ms),
            ("heartbeat.timeout_ms", hb.timeout_ms),
        ] {
            check(
                value <= max_span,
                format!("{key} ({value}) must be at most {max_span} (24 days)"),
            );
        }
        let access = channels::access(
            &self.channels,
            &self.auth.client_send,
            self.auth.jwt_enabled(),
        );
        check(access.is_ok(), access.err().unwrap_or_default());
        check(
            self.runtime.inbox_capacity > 0,
            "runtime.inbox_capacity must be greater than 0".into(),
        );
        if let Err(problem) = self.runtime.check_buffers() {
            check(false, problem);
        }
        let c = &self.cluster;
        check(
            c.presence_refresh_ms > 0 && c.presence_refresh_ms < c.presence_ttl_ms,
            "cluster.presence_refresh_ms must be greater than 0 and below cluster.presence_ttl_ms"
                .into(),
        );
        check(
            c.heartbeat_interval_ms > 0 && c.heartbeat_interval_ms < c.node_ttl_ms,
            "cluster.heartbeat_interval_ms must be greater than 0 and below cluster.node_ttl_ms"
                .into(),
        );
        let url = &self.redis_url;
        check(
            url.is_empty()
                || url.starts_with("redis://")
                || url.starts_with(SENTINEL_SCHEME)
                || url.starts_with(CLUSTER_SCHEME),
            if url.starts_with("rediss://") {
                format!(
                    "redis_url {url:?}: this build has no TLS client (rediss://); use redis:// over a \
                     private network or a TLS tunnel"
                )
            } else {
                format!(
                    "redis_url {url:?} must start with redis://, redis+sentinel:// or redis+cluster://"
                )
            },
        );
        if let Err(why) = parse_sentinel_url(url) {
            check(false, format!("redis_url {url:?}: {why}"));
        }
        if let Err(why) = parse_cluster_url(url) {
            check(false, format!("redis_url {url:?}: {why}"));
        }
        // What the client library refuses (a bad host, port or database) is refused here, at start-up:
        // a node told to join a cluster must not run alone instead.
        if url.starts_with("redis://")
            && let Err(e) = redis::Client::open(url.as_str())
        {
            check(false, format!("redis_url {url:?}: {e}"));
        }
        problems.extend(pusher::problems(&self.pusher));
        for (i, hook) in self.webhooks.iter().enumerate() {
            problems.extend(webhooks::problems(
                &format!("webhooks[{i}]"),
                &hook.url,
                &hook.events,
                &webhooks::GATEWAY_EVENTS,
            ));
        }
        let d = &self.webhook_delivery;
        if d.batch_ms == 0 || d.queue_capacity == 0 {
            problems
                .push("webhook_delivery.batch_ms and queue_capacity must be greater than 0".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}
