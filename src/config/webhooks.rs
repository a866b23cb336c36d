//! Webhook targets and delivery settings.
//!
//! Protocol v1 targets are `[[webhooks]]` tables (`url`, `secret`, `events` among `user_online`,
//! `user_offline`, `channel_occupied`, `channel_vacated`); a Pusher app's are its `webhooks` list
//! (`url`, `events` among Pusher's five; signed with the app's secret). `[webhook_delivery]` holds
//! the grace, batching and retry bounds shared by all. Lists of tables are file only.

use serde::{Deserialize, Serialize};

/// Events a protocol v1 target may ask for.
pub const GATEWAY_EVENTS: [&str; 4] = [
    "user_online",
    "user_offline",
    "channel_occupied",
    "channel_vacated",
];

/// Events a Pusher app's target may ask for.
pub const PUSHER_EVENTS: [&str; 5] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
];

/// One `[[webhooks]]` table (protocol v1).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayWebhook {
    /// `http://host[:port]/path` receiving the POSTs.
    pub url: String,
    /// Signs each body: `X-Gateway-Signature` = hex HMAC-SHA256(secret, body).
    pub secret: String,
    /// The events wanted; absent: all of them.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

impl std::fmt::Debug for GatewayWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayWebhook")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("events", &self.events)
            .finish()
    }
}

/// One entry of a Pusher app's `webhooks` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PusherWebhook {
    /// `http://host[:port]/path` receiving the POSTs.
    pub url: String,
    /// The events wanted; absent: all of them.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

/// `[webhook_delivery]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySection {
    /// How long `channel_vacated`, `member_removed` and `user_offline` wait: a quick return within it
    /// sends nothing at all. Default 3000.
    pub grace_ms: u64,
    /// Events are gathered this long into one POST per target. Default 50.
    pub batch_ms: u64,
    /// A POST that fails is retried with backoff for this long, then dropped. Default 60000.
    pub retry_for_ms: u64,
    /// Events waiting for the dispatcher; beyond, new ones are dropped (and counted). Default 65536.
    pub queue_capacity: usize,
}

impl Default for DeliverySection {
    fn default() -> Self {
        DeliverySection {
            grace_ms: 3000,
            batch_ms: 50,
            retry_for_ms: 60_000,
            queue_capacity: 65536,
        }
    }
}

/// Every problem with a target: a URL the dispatcher cannot post to, unknown events.
pub fn problems(
    what: &str,
    url: &str,
    events: &Option<Vec<String>>,
    known: &[&str],
) -> Vec<String> {
    let mut out = Vec::new();
    if parse_url(url).is_none() {
        out.push(format!(
            "{what}.url {url:?} must be http://host[:port]/path (https: put a local TLS proxy in front)"
        ));
    }
    for e in events.iter().flatten() {
        if !known.contains(&e.as_str()) {
            out.push(format!(
                "{what}.events: unknown event {e:?} (known: {})",
                known.join(", ")
            ));
        }
    }
    out
}

/// `(host, port, path)` of an `http://` URL.
pub fn parse_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, 80),
    };
    if host.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some((
        host.trim_matches(['[', ']']).to_owned(),
        port,
        path.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_events_are_checked() {
        assert_eq!(
            parse_url("http://127.0.0.1:9000/hooks?x=1"),
            Some(("127.0.0.1".into(), 9000, "/hooks?x=1".into()))
        );
        assert_eq!(
            parse_url("http://backend"),
            Some(("backend".into(), 80, "/".into()))
        );
        for bad in [
            "https://x/y",
            "ftp://x",
            "http://",
            "http://h:port/",
            "http://h/a b",
        ] {
            assert_eq!(parse_url(bad), None, "{bad}");
        }
        let p = problems(
            "webhooks[0]",
            "http://h/x",
            &Some(vec!["user_online".into(), "nope".into()]),
            &GATEWAY_EVENTS,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(problems("w", "http://h/x", &None, &PUSHER_EVENTS).is_empty());
    }
}
