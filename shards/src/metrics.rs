//! Metric names (all in one place) and a shard's cached handles.
//!
//! Every metric carries a `shard` label. A shard registers its handles once at start; afterwards an
//! update is an uncontended atomic on a counter no other core touches.

use metrics::{Counter, Gauge, counter, gauge};

use crate::ws::CloseReason;

/// Open client connections (gauge).
pub const CONNECTIONS_OPEN: &str = "gateway_connections_open";
/// Accepted TCP connections.
pub const CONNECTIONS_ACCEPTED: &str = "gateway_connections_accepted_total";
/// Closed connections by `reason`.
pub const CONNECTIONS_CLOSED: &str = "gateway_connections_closed_total";
/// WebSocket frames received.
pub const FRAMES_IN: &str = "gateway_frames_in_total";
/// WebSocket frames sent.
pub const FRAMES_OUT: &str = "gateway_frames_out_total";
/// Bytes received from clients.
pub const BYTES_IN: &str = "gateway_bytes_in_total";
/// Bytes sent to clients.
pub const BYTES_OUT: &str = "gateway_bytes_out_total";
/// Messages routed, by `path` (`local` or `cross_shard`).
pub const MESSAGES_ROUTED: &str = "gateway_messages_routed_total";
/// Messages waiting in the shard's inbox (gauge, sampled every tick).
pub const INBOX_DEPTH: &str = "gateway_inbox_depth";
/// Payload messages dropped because a target inbox stayed full.
pub const INBOX_DROPPED: &str = "gateway_inbox_dropped_total";
/// Connections closed with 4008.
pub const SLOW_CONSUMER_CLOSES: &str = "gateway_slow_consumer_closes_total";
/// Failed HTTP upgrades by `reason`.
pub const HANDSHAKE_FAILURES: &str = "gateway_handshake_failures_total";
/// Frames refused by the rate limit.
pub const RATE_LIMITED: &str = "gateway_rate_limited_total";
/// accept() failures by `reason` (`emfile`, `other`).
pub const ACCEPT_ERRORS: &str = "gateway_accept_errors_total";
/// Multishot receives stopped because the shard's buffer ring was empty (re-armed; nothing is lost).
pub const RECV_NO_BUFFERS: &str = "gateway_recv_no_buffers_total";
/// Buffers circulating in the shard's provided buffer ring (it grows when a pass runs out).
pub const RECV_BUFFERS: &str = "gateway_recv_buffers";
/// Client operations refused by the channel rules, grants or `auth.client_send`, by `op`.
pub const FORBIDDEN: &str = "gateway_forbidden_total";
/// Identifies refused by `limits.max_connections_per_user`.
pub const USER_CAP_REFUSED: &str = "gateway_user_cap_refused_total";
/// Upgrades answered 503 by `limits.max_connects_per_sec`.
pub const CONNECT_RATE_LIMITED: &str = "gateway_connect_rate_limited_total";
/// `ready` sent with `"cluster":"degraded"` (Redis unreachable when the connection identified).
pub const READY_DEGRADED: &str = "gateway_ready_degraded_total";

/// `op` labels of [`FORBIDDEN`].
pub const FORBIDDEN_OPS: [&str; 5] = ["subscribe", "publish", "presence", "history", "send"];

/// Resumes by `stream` (`user`: identify with `resume`; `channel`: subscribe with `since`) and
/// `outcome` (`resumed` or the gap's reason).
pub const RESUMES: &str = "gateway_resumes_total";
/// Messages replayed to resuming connections.
pub const RESUME_REPLAYED: &str = "gateway_resume_replayed_total";
/// Live messages dropped at a resuming connection because its replay already carried them.
pub const RESUME_DUPLICATES: &str = "gateway_resume_duplicates_dropped_total";
/// User and channel history streams held by the shard (embedded history; gauge).
pub const HISTORY_STREAMS: &str = "gateway_history_streams";
/// Bytes of frames kept in the shard's history (embedded history; gauge).
pub const HISTORY_BYTES: &str = "gateway_history_bytes";

/// `outcome` labels of [`RESUMES`]: `resumed`, then every gap reason.
pub const RESUME_OUTCOMES: [&str; 6] = [
    "resumed",
    "no_history",
    "too_old",
    "epoch_changed",
    "unavailable",
    "invalid_position",
];

/// Handshake failure labels.
pub const HANDSHAKE_REASONS: [&str; 8] = [
    "timeout",
    "too_large",
    "bad_request",
    "not_found",
    "method",
    "upgrade_required",
    "version",
    "io",
];

/// A shard's handles.
pub struct ShardMetrics {
    pub connections_open: Gauge,
    pub accepted: Counter,
    closed: Vec<Counter>,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub routed_local: Counter,
    pub routed_cross: Counter,
    pub inbox_depth: Gauge,
    pub inbox_dropped: Counter,
    pub slow_consumer: Counter,
    handshake_failures: Vec<Counter>,
    pub rate_limited: Counter,
    pub accept_emfile: Counter,
    pub accept_other: Counter,
    pub recv_no_buffers: Counter,
    pub recv_buffers: Gauge,
    resumes: Vec<Counter>,
    resume_replayed: Counter,
    pub resume_duplicates: Counter,
    pub history_streams: Gauge,
    pub history_bytes: Gauge,
    forbidden: Vec<Counter>,
    pub too_many_connections: Counter,
    pub connect_rate_limited: Counter,
    pub ready_degraded: Counter,
}

impl ShardMetrics {
    /// Registers the handles of shard `shard`.
    pub fn register(shard: usize) -> Self {
        let s = shard.to_string();
        let closed = CloseReason::ALL
            .iter()
            .map(|r| counter!(CONNECTIONS_CLOSED, "shard" => s.clone(), "reason" => r.label()))
            .collect();
        let handshake_failures = HANDSHAKE_REASONS
            .iter()
            .map(|r| counter!(HANDSHAKE_FAILURES, "shard" => s.clone(), "reason" => *r))
            .collect();
        ShardMetrics {
            connections_open: gauge!(CONNECTIONS_OPEN, "shard" => s.clone()),
            accepted: counter!(CONNECTIONS_ACCEPTED, "shard" => s.clone()),
            closed,
            frames_in: counter!(FRAMES_IN, "shard" => s.clone()),
            frames_out: counter!(FRAMES_OUT, "shard" => s.clone()),
            bytes_in: counter!(BYTES_IN, "shard" => s.clone()),
            bytes_out: counter!(BYTES_OUT, "shard" => s.clone()),
            routed_local: counter!(MESSAGES_ROUTED, "shard" => s.clone(), "path" => "local"),
            routed_cross: counter!(MESSAGES_ROUTED, "shard" => s.clone(), "path" => "cross_shard"),
            inbox_depth: gauge!(INBOX_DEPTH, "shard" => s.clone()),
            inbox_dropped: counter!(INBOX_DROPPED, "shard" => s.clone()),
            slow_consumer: counter!(SLOW_CONSUMER_CLOSES, "shard" => s.clone()),
            handshake_failures,
            rate_limited: counter!(RATE_LIMITED, "shard" => s.clone()),
            accept_emfile: counter!(ACCEPT_ERRORS, "shard" => s.clone(), "reason" => "emfile"),
            accept_other: counter!(ACCEPT_ERRORS, "shard" => s.clone(), "reason" => "other"),
            recv_no_buffers: counter!(RECV_NO_BUFFERS, "shard" => s.clone()),
            recv_buffers: gauge!(RECV_BUFFERS, "shard" => s.clone()),
            resumes: ["user", "channel"]
                .iter()
                .flat_map(|stream| {
                    RESUME_OUTCOMES.iter().map(|o| {
                        counter!(RESUMES, "shard" => s.clone(), "stream" => *stream, "outcome" => *o)
                    })
                })
                .collect(),
            resume_replayed: counter!(RESUME_REPLAYED, "shard" => s.clone()),
            resume_duplicates: counter!(RESUME_DUPLICATES, "shard" => s.clone()),
            history_streams: gauge!(HISTORY_STREAMS, "shard" => s.clone()),
            history_bytes: gauge!(HISTORY_BYTES, "shard" => s.clone()),
            forbidden: FORBIDDEN_OPS
                .iter()
                .map(|op| counter!(FORBIDDEN, "shard" => s.clone(), "op" => *op))
                .collect(),
            too_many_connections: counter!(USER_CAP_REFUSED, "shard" => s.clone()),
            connect_rate_limited: counter!(CONNECT_RATE_LIMITED, "shard" => s.clone()),
            ready_degraded: counter!(READY_DEGRADED, "shard" => s),
        }
    }

    /// Counts a closed connection.
    pub fn closed(&self, reason: CloseReason) {
        self.closed[reason.index()].increment(1);
    }

    /// Counts a resume (of a channel's stream when `channel`, else a user's) and the messages it
    /// replayed.
    pub fn resumes(&self, channel: bool, gap: Option<crate::history::Gap>, replayed: u64) {
        let label = gap.map_or("resumed", |g| g.as_str());
        if let Some(i) = RESUME_OUTCOMES.iter().position(|o| *o == label) {
            let at = usize::from(channel) * RESUME_OUTCOMES.len() + i;
            self.resumes[at].increment(1);
        }
        self.resume_replayed.increment(replayed);
    }

    /// Counts a refused operation; `op` is one of [`FORBIDDEN_OPS`].
    pub fn forbidden(&self, op: &str) {
        if let Some(i) = FORBIDDEN_OPS.iter().position(|o| *o == op) {
            self.forbidden[i].increment(1);
        }
    }

    /// Counts a failed handshake; `reason` is one of [`HANDSHAKE_REASONS`].
    pub fn handshake_failed(&self, reason: &str) {
        if let Some(i) = HANDSHAKE_REASONS.iter().position(|r| *r == reason) {
            self.handshake_failures[i].increment(1);
        }
    }
}
