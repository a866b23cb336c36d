//! Authorization: what an identified connection may do, decided where it is connected.
//!
//! Identity comes from [`crate::auth`]; this module decides the rest, from configuration and from
//! what the connection's tokens grant:
//! - [`rules`]: per channel family (namespace), who may subscribe, publish, read presence and replay
//!   history: `any`, `grant`, `user` (user-limited channels, `dm:#alice,bob`) or `none`;
//! - [`grants`]: the JWT claims `channels`, `publish` and `send_to`;
//! - subscription tokens: a JWT for one user and one channel, signed by the backend on demand;
//! - [`SendRule`]: who may send direct messages (`auth.client_send`).
//!
//! Every decision runs on the connection's shard before anything is routed, so a refusal never
//! reaches another shard, node or Redis, and it is the same whatever node owns the channel. Rules and
//! patterns are compiled at start-up; a decision scans a few patterns and allocates nothing. The HTTP
//! API is never limited by these rules: the backend is trusted.

pub mod grants;
pub mod rules;

use serde::Deserialize;

use crate::auth::{AuthError, JwtVerifier, checked_sub};
use grants::Grants;
use rules::{ChannelOp, ChannelRules, Perms, Rule, names_user};

/// Who may send direct messages (`auth.client_send`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendRule {
    /// Every identified connection, to any user.
    Any,
    /// Only to the users the JWT claim `send_to` matches.
    Grant,
    /// No client: direct messages come from the HTTP API only.
    None,
}

impl SendRule {
    /// Reads `any`, `grant` or `none`.
    pub fn parse(name: &str) -> Result<SendRule, String> {
        match name {
            "any" => Ok(SendRule::Any),
            "grant" => Ok(SendRule::Grant),
            "none" => Ok(SendRule::None),
            _ => Err(format!("{name:?} is not one of any, grant, none")),
        }
    }
}

/// The node's authorization settings, shared read-only by every shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Channel rules by namespace.
    pub channels: ChannelRules,
    /// Who may send direct messages.
    pub client_send: SendRule,
}

impl Access {
    /// Dev mode's defaults: everything open (the README demo).
    pub fn open() -> Self {
        Access {
            channels: ChannelRules::uniform(Perms::OPEN),
            client_send: SendRule::Any,
        }
    }

    /// JWT mode's defaults: channels need a grant, publishing and direct messages are for backends.
    pub fn jwt_defaults() -> Self {
        Access {
            channels: ChannelRules::uniform(Perms::JWT),
            client_send: SendRule::None,
        }
    }

    /// Decides `op` on `channel` for `user` holding `grants`. `Err` carries the refusal's message.
    pub fn channel(
        &self,
        op: ChannelOp,
        channel: &str,
        user: &str,
        grants: Option<&Grants>,
    ) -> Result<(), Refusal> {
        match self.channels.perms(channel).rule(op) {
            Rule::Any => Ok(()),
            Rule::None => Err(Refusal::NoClient),
            Rule::User if names_user(channel, user) => Ok(()),
            Rule::User => Err(Refusal::NotNamed),
            Rule::Grant if grants.is_some_and(|g| g.allows(op, channel)) => Ok(()),
            Rule::Grant => Err(Refusal::NoGrant),
        }
    }

    /// Decides a direct message to `to`.
    pub fn send(&self, to: &str, grants: Option<&Grants>) -> Result<(), Refusal> {
        match self.client_send {
            SendRule::Any => Ok(()),
            SendRule::None => Err(Refusal::NoClientSend),
            SendRule::Grant if grants.is_some_and(|g| g.allows_send(to)) => Ok(()),
            SendRule::Grant => Err(Refusal::NoSendGrant),
        }
    }
}

/// Why an operation was refused (the text of the `forbidden` error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The rule is `none`.
    NoClient,
    /// The rule is `user` and the channel does not name this user.
    NotNamed,
    /// The rule is `grant` and neither a claim nor a subscription token grants it.
    NoGrant,
    /// `auth.client_send = "none"`.
    NoClientSend,
    /// `auth.client_send = "grant"` and `send_to` does not match the recipient.
    NoSendGrant,
}

impl Refusal {
    /// The error frame's `message`.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NoClient => "no client may do this on this channel; only the HTTP API",
            Refusal::NotNamed => "this channel is limited to the users it names after its last #",
            Refusal::NoGrant => "no grant for this channel: a token claim or a subscription token",
            Refusal::NoClientSend => "clients may not send direct messages; only the HTTP API",
            Refusal::NoSendGrant => "no grant to send to this user (token claim send_to)",
        }
    }
}

/// The claims of a subscription token.
#[derive(Deserialize)]
struct SubscriptionClaims {
    sub: Option<String>,
    channel: Option<String>,
}

/// Checks a subscription token: signed with the configured keys, not expired, `sub` the connection's
/// `user` and `channel` the channel asked for.
pub fn verify_subscription(
    verifier: &JwtVerifier,
    token: &str,
    user: &str,
    channel: &str,
) -> Result<(), AuthError> {
    let claims: SubscriptionClaims = verifier.decode(token)?;
    if checked_sub(claims.sub)? != user {
        return Err(AuthError::InvalidToken(
            "subscription token is for another user".into(),
        ));
    }
    match claims.channel {
        Some(c) if c == channel => Ok(()),
        Some(_) => Err(AuthError::InvalidToken(
            "subscription token is for another channel".into(),
        )),
        None => Err(AuthError::InvalidToken("missing claim channel".into())),
    }
}

/// What a JWT-mode connection carries: its grants and when its token expires.
#[derive(Debug)]
pub struct ConnAuth {
    /// Expiry on the shard clock (ms); `u64::MAX`: never.
    pub exp_ms: u64,
    /// What the token grants.
    pub grants: Grants,
}

impl ConnAuth {
    /// The shard-clock deadline of a token expiring at `exp` (Unix seconds), given the shard clock
    /// `now_ms` and the wall clock `unix_ms` read at the same moment.
    pub fn deadline(exp: u64, now_ms: u64, unix_ms: u64) -> u64 {
        now_ms.saturating_add(exp.saturating_mul(1000).saturating_sub(unix_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(channels: &[&str]) -> Grants {
        let list = channels.iter().map(|s| s.to_string()).collect();
        Grants::from_claims(Some(list), None, Some(vec!["bob".into()])).unwrap()
    }

    #[test]
    fn every_rule_value() {
        let rules = ChannelRules::new(
            vec![
                ("public:*".into(), Perms::OPEN),
                (
                    "dm:*".into(),
                    Perms {
                        subscribe: Rule::User,
                        ..Perms::JWT
                    },
                ),
            ],
            Perms::JWT,
        )
        .unwrap();
        let access = Access {
            channels: rules,
            client_send: SendRule::Grant,
        };
        let g = grants(&["room:*"]);
        let sub = ChannelOp::Subscribe;
        assert_eq!(access.channel(sub, "public:x", "amy", None), Ok(()));
        assert_eq!(access.channel(sub, "room:1", "amy", Some(&g)), Ok(()));
        assert_eq!(
            access.channel(sub, "room:1", "amy", None),
            Err(Refusal::NoGrant)
        );
        assert_eq!(
            access.channel(sub, "lobby", "amy", Some(&g)),
            Err(Refusal::NoGrant)
        );
        assert_eq!(access.channel(sub, "dm:#amy,bob", "amy", None), Ok(()));
        assert_eq!(
            access.channel(sub, "dm:#amy,bob", "eve", Some(&g)),
            Err(Refusal::NotNamed)
        );
        assert_eq!(
            access.channel(ChannelOp::Publish, "room:1", "amy", Some(&g)),
            Err(Refusal::NoClient)
        );
        assert_eq!(access.send("bob", Some(&g)), Ok(()));
        assert_eq!(access.send("eve", Some(&g)), Err(Refusal::NoSendGrant));
        assert_eq!(
            Access::jwt_defaults().send("bob", Some(&g)),
            Err(Refusal::NoClientSend)
        );
        assert_eq!(Access::open().send("bob", None), Ok(()));
        assert!(SendRule::parse("some").is_err());
    }

    #[test]
    fn deadlines_follow_the_wall_clock() {
        assert_eq!(ConnAuth::deadline(100, 5_000, 99_000), 6_000);
        // Already expired: the deadline is now.
        assert_eq!(ConnAuth::deadline(100, 5_000, 120_000), 5_000);
        assert_eq!(ConnAuth::deadline(u64::MAX, 0, 0), u64::MAX);
    }
}
