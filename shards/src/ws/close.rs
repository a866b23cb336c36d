//! Why a connection ends: one table from cause to close code, reason text and metric label.
//!
//! Every place that ends a connection names a [`CloseReason`]; the code sent on the wire, the short reason
//! text in the close frame and the `reason` label of `gateway_connections_closed_total` all come from
//! here, so the protocol document, the wire and the dashboards cannot disagree.

/// The cause of a connection's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// 1000: the client closed normally (it sent a close frame first) or asked to.
    Normal,
    /// 1001: the node is shutting down.
    GoingAway,
    /// 1002: the client broke RFC 6455 (unmasked frame, bad opcode, bad control frame, ...).
    ProtocolError,
    /// 1007: a text message or close reason that is not UTF-8.
    InvalidUtf8,
    /// 1008: the Origin is not allowed or the token was refused.
    Policy,
    /// 1009: a frame or message over the configured size.
    TooBig,
    /// 1011: the server hit an internal error on this connection.
    Internal,
    /// 1012: the node is draining (restart or scale-in); the reason text carries a reconnect hint.
    Restart,
    /// 1013: the node is at its connection cap.
    OverCapacity,
    /// 1013: the client's address already holds `limits.max_connections_per_ip` connections.
    IpLimit,
    /// 1008: WebSocket pings over `limits.max_pings_per_sec`.
    PingFlood,
    /// 1009: a fragmented message over `websocket.max_fragments` frames.
    TooManyFragments,
    /// 4001: no identify within the auth timeout.
    IdentifyTimeout,
    /// 4008: the outbound queue went over its byte bound (the client does not read fast enough).
    SlowConsumer,
    /// 4009: nothing received for the heartbeat timeout.
    HeartbeatTimeout,
    /// 4010: a backend disconnected this user (`POST /v1/disconnect`).
    Disconnected,
    /// 4011: the connection's JWT expired without a `refresh` (reconnect with a fresh token).
    TokenExpired,
    /// Pusher 4001: no app has the key of `/app/{key}`.
    PusherAppUnknown,
    /// Pusher 4003: the app is disabled.
    PusherAppDisabled,
    /// Pusher 4006: the `protocol` query parameter is not a number.
    PusherProtocolMalformed,
    /// Pusher 4007: a protocol version other than 5 to 7.
    PusherProtocolUnsupported,
    /// Pusher 4008: no `protocol` query parameter.
    PusherProtocolMissing,
    /// Pusher 4100: the app or the node is at its connection cap (pusher-js backs off and retries).
    PusherOverCapacity,
    /// No close frame: the peer reset or closed the TCP connection, or the handshake failed.
    PeerGone,
}

impl CloseReason {
    /// Every reason, for registering one metric handle each.
    pub const ALL: [CloseReason; 24] = [
        CloseReason::Normal,
        CloseReason::GoingAway,
        CloseReason::ProtocolError,
        CloseReason::InvalidUtf8,
        CloseReason::Policy,
        CloseReason::TooBig,
        CloseReason::Internal,
        CloseReason::Restart,
        CloseReason::OverCapacity,
        CloseReason::IpLimit,
        CloseReason::PingFlood,
        CloseReason::TooManyFragments,
        CloseReason::IdentifyTimeout,
        CloseReason::SlowConsumer,
        CloseReason::HeartbeatTimeout,
        CloseReason::Disconnected,
        CloseReason::TokenExpired,
        CloseReason::PusherAppUnknown,
        CloseReason::PusherAppDisabled,
        CloseReason::PusherProtocolMalformed,
        CloseReason::PusherProtocolUnsupported,
        CloseReason::PusherProtocolMissing,
        CloseReason::PusherOverCapacity,
        CloseReason::PeerGone,
    ];

    /// The close code sent on the wire.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Normal | CloseReason::PeerGone => 1000,
            CloseReason::GoingAway => 1001,
            CloseReason::ProtocolError => 1002,
            CloseReason::InvalidUtf8 => 1007,
            CloseReason::Policy | CloseReason::PingFlood => 1008,
            CloseReason::TooBig | CloseReason::TooManyFragments => 1009,
            CloseReason::Internal => 1011,
            CloseReason::Restart => 1012,
            CloseReason::OverCapacity | CloseReason::IpLimit => 1013,
            CloseReason::IdentifyTimeout => 4001,
            CloseReason::SlowConsumer => 4008,
            CloseReason::HeartbeatTimeout => 4009,
            CloseReason::Disconnected => 4010,
            CloseReason::TokenExpired => 4011,
            CloseReason::PusherAppUnknown => 4001,
            CloseReason::PusherAppDisabled => 4003,
            CloseReason::PusherProtocolMalformed => 4006,
            CloseReason::PusherProtocolUnsupported => 4007,
            CloseReason::PusherProtocolMissing => 4008,
            CloseReason::PusherOverCapacity => 4100,
        }
    }

    /// The reason text sent in the close frame (short: a close payload holds at most 123 bytes of text).
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Normal | CloseReason::PeerGone => "bye",
            CloseReason::GoingAway => "server shutting down",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::InvalidUtf8 => "invalid utf-8",
            CloseReason::Policy => "policy violation",
            CloseReason::TooBig => "message too big",
            CloseReason::Internal => "internal error",
            CloseReason::Restart => "server restarting",
            CloseReason::OverCapacity => "over capacity, try again later",
            CloseReason::IpLimit => "too many connections from this address",
            CloseReason::PingFlood => "too many pings",
            CloseReason::TooManyFragments => "too many fragments",
            CloseReason::IdentifyTimeout => "identify timeout",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::HeartbeatTimeout => "heartbeat timeout",
            CloseReason::Disconnected => "disconnected by the server",
            CloseReason::TokenExpired => "token expired",
            CloseReason::PusherAppUnknown => "app does not exist",
            CloseReason::PusherAppDisabled => "app disabled",
            CloseReason::PusherProtocolMalformed => "invalid protocol version format",
            CloseReason::PusherProtocolUnsupported => "unsupported protocol version",
            CloseReason::PusherProtocolMissing => "no protocol version supplied",
            CloseReason::PusherOverCapacity => "over capacity",
        }
    }

    /// The `reason` label of `gateway_connections_closed_total`.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Normal => "normal",
            CloseReason::GoingAway => "going_away",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::InvalidUtf8 => "invalid_utf8",
            CloseReason::Policy => "policy",
            CloseReason::TooBig => "too_big",
            CloseReason::Internal => "internal",
            CloseReason::Restart => "restart",
            CloseReason::OverCapacity => "over_capacity",
            CloseReason::IpLimit => "ip_limit",
            CloseReason::PingFlood => "ping_flood",
            CloseReason::TooManyFragments => "too_many_fragments",
            CloseReason::IdentifyTimeout => "identify_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::Disconnected => "disconnected",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::PusherAppUnknown => "pusher_app_unknown",
            CloseReason::PusherAppDisabled => "pusher_app_disabled",
            CloseReason::PusherProtocolMalformed => "pusher_protocol_malformed",
            CloseReason::PusherProtocolUnsupported => "pusher_protocol_unsupported",
            CloseReason::PusherProtocolMissing => "pusher_protocol_missing",
            CloseReason::PusherOverCapacity => "pusher_over_capacity",
            CloseReason::PeerGone => "peer_gone",
        }
    }

    /// Index into per-reason arrays (metric handles).
    pub fn index(self) -> usize {
        CloseReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(0)
    }
}

/// The reason text of a drain's 1012: a JSON object with the jittered reconnect hint, e.g.
/// `{"reconnect_after_ms":1234}`, so clients can parse it.
pub fn restart_reason(reconnect_after_ms: u64) -> String {
    format!("{{\"reconnect_after_ms\":{reconnect_after_ms}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_labels_are_distinct_where_they_must_be() {
        let mut labels: Vec<_> = CloseReason::ALL.iter().map(|r| r.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), CloseReason::ALL.len());
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(r.text().len() <= 123);
        }
        assert_eq!(CloseReason::SlowConsumer.code(), 4008);
        assert_eq!(CloseReason::Restart.code(), 1012);
        assert!(restart_reason(u32::MAX as u64).len() <= 123);
        assert_eq!(CloseReason::HeartbeatTimeout.code(), 4009);
        assert_eq!(CloseReason::IdentifyTimeout.code(), 4001);
        assert_eq!(CloseReason::IpLimit.code(), 1013);
        assert_eq!(CloseReason::PingFlood.code(), 1008);
        assert_eq!(CloseReason::TooManyFragments.code(), 1009);
        // Reasons sharing a code are told apart by their text.
        let mut texts: Vec<_> = CloseReason::ALL
            .iter()
            .filter(|r| **r != CloseReason::PeerGone)
            .map(|r| r.text())
            .collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), CloseReason::ALL.len() - 1);
    }
}
