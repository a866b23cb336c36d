//! Channel rules: which client may subscribe to, publish on, read the presence of and replay the
//! history of a channel, by namespace.
//!
//! Operators name channels by family (`public:*`, `room:*`, `dm:#alice,bob`); each family gets a rule
//! per operation, the first matching namespace wins, and a default covers every other channel. The
//! rules are compiled once at start-up and shared read-only by every shard: a decision is a short
//! scan of patterns with no allocation.

use crate::glob;

/// Longest namespace pattern, in bytes (a channel name's own limit).
pub const MAX_PATTERN_BYTES: usize = 128;
/// Most namespaces in one configuration (each decision scans them in order).
pub const MAX_NAMESPACES: usize = 256;

/// Who may do one operation on a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Every identified connection.
    Any,
    /// Connections whose JWT grants the channel (claims `channels` / `publish`) or that present a
    /// subscription token for it.
    Grant,
    /// Only the users the channel names after its last `#`, comma-separated (`dm:#alice,bob`).
    User,
    /// No client: only the HTTP API.
    None,
}

impl Rule {
    /// Every rule, in the order the documentation lists them.
    pub const ALL: [Rule; 4] = [Rule::Any, Rule::Grant, Rule::User, Rule::None];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Any => "any",
            Rule::Grant => "grant",
            Rule::User => "user",
            Rule::None => "none",
        }
    }

    /// Reads a rule by its configuration name.
    pub fn parse(name: &str) -> Result<Rule, String> {
        Rule::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| format!("{name:?} is not one of any, grant, user, none"))
    }
}

/// A client operation on a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelOp {
    Subscribe,
    Publish,
    Presence,
    /// Subscribe with `since` (a replay of the channel's history).
    History,
}

impl ChannelOp {
    /// The `op` label of `gateway_forbidden_total`, and the word used in refusals.
    pub fn label(self) -> &'static str {
        match self {
            ChannelOp::Subscribe => "subscribe",
            ChannelOp::Publish => "publish",
            ChannelOp::Presence => "presence",
            ChannelOp::History => "history",
        }
    }
}

/// The rules of one channel family, one per operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    pub subscribe: Rule,
    pub publish: Rule,
    pub presence: Rule,
    pub history: Rule,
}

impl Perms {
    /// Dev mode's default: every identified connection may do everything (the README demo).
    pub const OPEN: Perms = Perms {
        subscribe: Rule::Any,
        publish: Rule::Any,
        presence: Rule::Any,
        history: Rule::Any,
    };

    /// JWT mode's default: reading needs a grant, publishing is for backends only.
    pub const JWT: Perms = Perms {
        subscribe: Rule::Grant,
        publish: Rule::None,
        presence: Rule::Grant,
        history: Rule::Grant,
    };

    /// The rule of `op`.
    pub fn rule(&self, op: ChannelOp) -> Rule {
        match op {
            ChannelOp::Subscribe => self.subscribe,
            ChannelOp::Publish => self.publish,
            ChannelOp::Presence => self.presence,
            ChannelOp::History => self.history,
        }
    }
}

/// A channel family: a pattern and its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pattern: Box<str>,
    perms: Perms,
}

/// Every namespace in order, and the default for channels none matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRules {
    namespaces: Box<[Namespace]>,
    default: Perms,
}

impl ChannelRules {
    /// No namespace, `default` for every channel.
    pub fn uniform(default: Perms) -> Self {
        ChannelRules {
            namespaces: Box::new([]),
            default,
        }
    }

    /// Compiles `namespaces` (pattern, rules) in order of precedence; refuses an empty, over-long or
    /// control-character pattern, and more than [`MAX_NAMESPACES`], naming the culprit.
    pub fn new(namespaces: Vec<(String, Perms)>, default: Perms) -> Result<Self, String> {
        if namespaces.len() > MAX_NAMESPACES {
            return Err(format!(
                "{} namespaces; at most {MAX_NAMESPACES}",
                namespaces.len()
            ));
        }
        let mut compiled = Vec::with_capacity(namespaces.len());
        for (i, (pattern, perms)) in namespaces.into_iter().enumerate() {
            check_pattern(&pattern).map_err(|why| format!("namespace {i} ({pattern:?}): {why}"))?;
            compiled.push(Namespace {
                pattern: pattern.into(),
                perms,
            });
        }
        Ok(ChannelRules {
            namespaces: compiled.into(),
            default,
        })
    }

    /// The rules of `channel`: the first namespace whose pattern matches, else the default.
    pub fn perms(&self, channel: &str) -> &Perms {
        self.namespaces
            .iter()
            .find(|ns| glob::matches(ns.pattern.as_bytes(), channel.as_bytes()))
            .map_or(&self.default, |ns| &ns.perms)
    }

    /// The rules for channels no namespace matches.
    pub fn default_perms(&self) -> &Perms {
        &self.default
    }

    /// How many namespaces there are.
    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    /// True with no namespace.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }
}

/// Checks a pattern (namespace, or a grant's): 1..=128 bytes without control characters.
pub fn check_pattern(pattern: &str) -> Result<(), &'static str> {
    if pattern.is_empty() {
        return Err("the pattern is empty");
    }
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err("the pattern is longer than 128 bytes");
    }
    if pattern.chars().any(char::is_control) {
        return Err("the pattern contains control characters");
    }
    Ok(())
}

/// True when `channel` names `user` among the users after its last `#` (`dm:#alice,bob`). A channel
/// without `#` names nobody.
pub fn names_user(channel: &str, user: &str) -> bool {
    match channel.rfind('#') {
        Some(at) => !user.is_empty() && channel[at + 1..].split(',').any(|u| u == user),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(s: Rule) -> Perms {
        Perms {
            subscribe: s,
            ..Perms::OPEN
        }
    }

    #[test]
    fn first_match_wins_then_default() {
        let rules = ChannelRules::new(
            vec![
                ("public:*".into(), perms(Rule::Any)),
                ("public:secret".into(), perms(Rule::None)),
                ("dm:*".into(), perms(Rule::User)),
            ],
            Perms::JWT,
        )
        .unwrap();
        assert_eq!(rules.perms("public:news").subscribe, Rule::Any);
        // Shadowed by the earlier public:*.
        assert_eq!(rules.perms("public:secret").subscribe, Rule::Any);
        assert_eq!(rules.perms("dm:#a,b").subscribe, Rule::User);
        assert_eq!(rules.perms("room:1"), &Perms::JWT);
        assert_eq!(rules.len(), 3);
        assert_eq!(ChannelRules::uniform(Perms::OPEN).perms("x"), &Perms::OPEN);
    }

    #[test]
    fn invalid_patterns_and_rules_are_refused() {
        for bad in ["", "a\nb", &"x".repeat(129)] {
            let err = ChannelRules::new(vec![(bad.to_string(), Perms::OPEN)], Perms::OPEN);
            assert!(err.is_err(), "{bad:?}");
        }
        let too_many = (0..=MAX_NAMESPACES)
            .map(|i| (format!("n{i}:*"), Perms::OPEN))
            .collect();
        assert!(ChannelRules::new(too_many, Perms::OPEN).is_err());
        assert_eq!(Rule::parse("grant"), Ok(Rule::Grant));
        let err = Rule::parse("anyone").unwrap_err();
        assert!(err.contains("any, grant, user, none"), "{err}");
    }

    #[test]
    fn user_limited_channels() {
        assert!(names_user("dm:#alice,bob", "alice"));
        assert!(names_user("dm:#alice,bob", "bob"));
        assert!(!names_user("dm:#alice,bob", "carol"));
        assert!(!names_user("dm:#alice,bob", "ali"));
        assert!(names_user("inbox:#alice", "alice"));
        // The last `#` counts: the users are what follows it.
        assert!(names_user("a#b:#carol", "carol"));
        assert!(!names_user("a#b:#carol", "b:"));
        assert!(!names_user("inbox:alice", "alice"));
        assert!(!names_user("inbox:#", ""));
    }
}
