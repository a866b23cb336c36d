//! `[channels]` and `auth.client_send`: the operator's authorization rules, read from the file and
//! turned into the data plane's [`shards::access::Access`] (patterns compiled once, at start-up).
//!
//! ```toml
//! [[channels.namespaces]]
//! pattern = "public:*"   # `*`: any run of characters; first match wins
//! subscribe = "any"      # any | grant | user | none
//! publish = "none"
//! presence = "any"
//! history = "any"        # subscribe with `since`
//!
//! [channels.default]     # channels no namespace matches
//! subscribe = "grant"
//! ```
//!
//! A rule left out of a namespace, or of `[channels.default]`, is the mode's default for that
//! operation: in dev mode `any` for everything; in JWT mode `grant` for subscribe, presence and
//! history and `none` for publish. Start-up refuses an unknown rule or an invalid pattern, naming it.

use serde::{Deserialize, Serialize};
use shards::access::{
    Access, SendRule,
    rules::{ChannelRules, Perms, Rule},
};

/// `[channels]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsSection {
    /// Channel families in order of precedence.
    pub namespaces: Vec<NamespaceEntry>,
    /// Rules of the channels no namespace matches (each left out: the mode's default).
    pub default: RuleSet,
}

/// One `[[channels.namespaces]]` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceEntry {
    /// Channel-name pattern; `*` matches any run of characters.
    pub pattern: String,
    /// The rules; each left out is the default's.
    #[serde(flatten)]
    pub rules: RuleSet,
}

/// Rules per operation, by name (`any`, `grant`, `user`, `none`); `None`: inherited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSet {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
}

impl RuleSet {
    /// These rules over `base`; `Err` names the first bad value, prefixed with `at`.
    fn over(&self, base: Perms, at: &str) -> Result<Perms, String> {
        let pick = |value: &Option<String>, op: &str, inherited: Rule| match value {
            None => Ok(inherited),
            Some(v) => Rule::parse(v).map_err(|e| format!("{at}.{op}: {e}")),
        };
        Ok(Perms {
            subscribe: pick(&self.subscribe, "subscribe", base.subscribe)?,
            publish: pick(&self.publish, "publish", base.publish)?,
            presence: pick(&self.presence, "presence", base.presence)?,
            history: pick(&self.history, "history", base.history)?,
        })
    }
}

/// The node's authorization settings: `[channels]` over the mode's defaults, and `client_send`
/// (`""`: the mode's default). `jwt`: JWT mode is on.
pub fn access(channels: &ChannelsSection, client_send: &str, jwt: bool) -> Result<Access, String> {
    let mode = if jwt { Perms::JWT } else { Perms::OPEN };
    let default = channels.default.over(mode, "channels.default")?;
    let mut namespaces = Vec::with_capacity(channels.namespaces.len());
    for (i, ns) in channels.namespaces.iter().enumerate() {
        let at = format!("channels.namespaces[{i}]");
        namespaces.push((ns.pattern.clone(), ns.rules.over(default, &at)?));
    }
    let channels = ChannelRules::new(namespaces, default).map_err(|e| format!("channels: {e}"))?;
    let client_send = match client_send {
        "" if jwt => SendRule::None,
        "" => SendRule::Any,
        other => SendRule::parse(other).map_err(|e| format!("auth.client_send: {e}"))?,
    };
    Ok(Access {
        channels,
        client_send,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::access::rules::ChannelOp;

    fn parse(toml_text: &str) -> ChannelsSection {
        #[derive(Deserialize)]
        struct Top {
            channels: ChannelsSection,
        }
        toml::from_str::<Top>(toml_text).unwrap().channels
    }

    #[test]
    fn namespaces_inherit_the_default_then_the_mode() {
        let section = parse(
            r#"
            [[channels.namespaces]]
            pattern = "public:*"
            subscribe = "any"
            [[channels.namespaces]]
            pattern = "dm:*"
            subscribe = "user"
            publish = "user"
            [channels.default]
            presence = "none"
            "#,
        );
        let a = access(&section, "", true).unwrap();
        let public = a.channels.perms("public:x");
        assert_eq!(public.rule(ChannelOp::Subscribe), Rule::Any);
        assert_eq!(public.rule(ChannelOp::Publish), Rule::None);
        assert_eq!(public.rule(ChannelOp::Presence), Rule::None);
        assert_eq!(public.rule(ChannelOp::History), Rule::Grant);
        assert_eq!(a.channels.perms("dm:#a,b").publish, Rule::User);
        assert_eq!(a.client_send, SendRule::None);
        let dev = access(&section, "", false).unwrap();
        assert_eq!(
            dev.channels.perms("room").rule(ChannelOp::Publish),
            Rule::Any
        );
        assert_eq!(dev.client_send, SendRule::Any);
        assert_eq!(
            access(&section, "grant", false).unwrap().client_send,
            SendRule::Grant
        );
    }

    #[test]
    fn bad_rules_and_patterns_are_named() {
        let bad_rule = parse("[[channels.namespaces]]\npattern = \"a:*\"\npublish = \"all\"\n");
        let e = access(&bad_rule, "", false).unwrap_err();
        assert!(
            e.contains("channels.namespaces[0].publish") && e.contains("\"all\""),
            "{e}"
        );
        let empty = parse("[[channels.namespaces]]\nsubscribe = \"any\"\n");
        let e = access(&empty, "", false).unwrap_err();
        assert!(e.contains("namespace 0") && e.contains("empty"), "{e}");
        let e = access(&ChannelsSection::default(), "everyone", false).unwrap_err();
        assert!(e.contains("auth.client_send"), "{e}");
        let unknown = toml::from_str::<toml::Table>("[channels]\nnamespace = []\n").unwrap();
        let unknown: Result<ChannelsSection, _> = unknown["channels"].clone().try_into();
        assert!(unknown.is_err());
    }
}
