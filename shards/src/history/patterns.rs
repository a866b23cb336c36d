//! Which channels keep history: channel-name patterns from `history.channels`.
//!
//! Channel history costs memory (or Redis) per channel and a numbering step per publication, so it is
//! opt-in per channel family, the way operators name them (`room:*`, `ticker:*:eu`). A pattern is a
//! channel name in which `*` stands for any run of characters (empty included); there is no other
//! special character, so every channel name can be matched literally. Patterns are checked once per
//! publication and subscription at the channel's owner, against at most a few dozen patterns of at
//! most 128 bytes: no index is needed.

/// The configured channel patterns; empty: no channel keeps history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelPatterns {
    patterns: Vec<Box<str>>,
}

impl ChannelPatterns {
    /// The patterns, as configured.
    pub fn new<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Self {
        ChannelPatterns {
            patterns: patterns.into_iter().map(|p| p.as_ref().into()).collect(),
        }
    }

    /// True when no channel keeps history.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when `channel` keeps history.
    pub fn matches(&self, channel: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| crate::glob::matches(p.as_bytes(), channel.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_wildcard_patterns() {
        let p = ChannelPatterns::new(["room:*", "ticker:*:eu", "news"]);
        assert!(p.matches("room:1"));
        assert!(p.matches("room:"));
        assert!(p.matches("room:a:b"));
        assert!(!p.matches("room"));
        assert!(!p.matches("xroom:1"));
        assert!(p.matches("ticker:btc:eu"));
        assert!(p.matches("ticker::eu"));
        assert!(p.matches("ticker:a:eu:eu"));
        assert!(!p.matches("ticker:btc:us"));
        assert!(!p.matches("ticker:btc:eu:x"));
        assert!(p.matches("news"));
        assert!(!p.matches("news:1"));
        assert!(!ChannelPatterns::default().matches("room:1"));
        assert!(ChannelPatterns::new(["*"]).matches("anything"));
    }
}
