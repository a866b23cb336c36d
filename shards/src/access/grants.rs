//! What a connection's JWT grants it: channel patterns to read (`channels`), to publish on
//! (`publish`), and user patterns to send to (`send_to`). Read once at identify (and at `refresh`),
//! bounded in size, and kept with the connection only in JWT mode.

use super::rules::{ChannelOp, check_pattern};
use crate::glob;

/// Most patterns in one claim (each decision scans them).
pub const MAX_GRANT_PATTERNS: usize = 64;

/// The grants of one connection; empty: none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Channels it may subscribe to, read the presence and history of.
    channels: Box<[Box<str>]>,
    /// Channels it may publish on.
    publish: Box<[Box<str>]>,
    /// Users it may send direct messages to.
    send_to: Box<[Box<str>]>,
}

impl Grants {
    /// Grants from the claims of a token (absent claims grant nothing); refuses a claim with more than
    /// [`MAX_GRANT_PATTERNS`] patterns or a malformed pattern, naming the claim.
    pub fn from_claims(
        channels: Option<Vec<String>>,
        publish: Option<Vec<String>>,
        send_to: Option<Vec<String>>,
    ) -> Result<Self, String> {
        Ok(Grants {
            channels: claim("channels", channels)?,
            publish: claim("publish", publish)?,
            send_to: claim("send_to", send_to)?,
        })
    }

    /// True when the grants cover `op` on `channel` (`publish` for publishing, `channels` otherwise).
    pub fn allows(&self, op: ChannelOp, channel: &str) -> bool {
        let patterns = match op {
            ChannelOp::Publish => &self.publish,
            _ => &self.channels,
        };
        any_matches(patterns, channel)
    }

    /// True when the grants let the connection send to `user`.
    pub fn allows_send(&self, user: &str) -> bool {
        any_matches(&self.send_to, user)
    }

    /// True when nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.publish.is_empty() && self.send_to.is_empty()
    }

    /// Heap bytes held (for the per-connection memory budget).
    pub fn heap_bytes(&self) -> usize {
        let list = |l: &[Box<str>]| l.len() * 16 + l.iter().map(|p| p.len()).sum::<usize>();
        list(&self.channels) + list(&self.publish) + list(&self.send_to)
    }
}

fn any_matches(patterns: &[Box<str>], name: &str) -> bool {
    patterns
        .iter()
        .any(|p| glob::matches(p.as_bytes(), name.as_bytes()))
}

fn claim(name: &str, patterns: Option<Vec<String>>) -> Result<Box<[Box<str>]>, String> {
    let patterns = patterns.unwrap_or_default();
    if patterns.len() > MAX_GRANT_PATTERNS {
        return Err(format!(
            "claim {name} has {} patterns; at most {MAX_GRANT_PATTERNS}",
            patterns.len()
        ));
    }
    for p in &patterns {
        check_pattern(p).map_err(|why| format!("claim {name}: {why}"))?;
    }
    Ok(patterns.into_iter().map(String::into_boxed_str).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn claims_grant_by_pattern() {
        let g = Grants::from_claims(list(&["room:*", "news"]), list(&["room:7"]), list(&["bob"]))
            .unwrap();
        assert!(g.allows(ChannelOp::Subscribe, "room:1"));
        assert!(g.allows(ChannelOp::Presence, "news"));
        assert!(g.allows(ChannelOp::History, "room:2"));
        assert!(!g.allows(ChannelOp::Subscribe, "news:1"));
        assert!(g.allows(ChannelOp::Publish, "room:7"));
        assert!(!g.allows(ChannelOp::Publish, "room:1"));
        assert!(g.allows_send("bob"));
        assert!(!g.allows_send("bobby"));
        assert!(!g.is_empty());
        assert!(g.heap_bytes() > 0);
        let none = Grants::default();
        assert!(none.is_empty() && !none.allows(ChannelOp::Subscribe, "x"));
    }

    #[test]
    fn oversized_or_malformed_claims_are_refused() {
        let many: Vec<String> = (0..=MAX_GRANT_PATTERNS).map(|i| format!("c{i}")).collect();
        let err = Grants::from_claims(Some(many), None, None).unwrap_err();
        assert!(err.contains("channels"), "{err}");
        assert!(Grants::from_claims(None, list(&[""]), None).is_err());
        assert!(Grants::from_claims(None, None, list(&["a\u{0}"])).is_err());
    }
}
