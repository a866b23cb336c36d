//! Identity verification for the `identify` operation.
//!
//! A connection must identify before it can send, subscribe or publish. This module turns the
//! `user` / `token` fields of an `identify` frame into a verified user name, independently of the
//! connection and protocol code, so the policy (dev mode versus JWT mode, which algorithms and keys
//! are accepted, how `exp` is enforced, what a valid user name is) lives in one place and can be
//! unit-tested without sockets.
//!
//! Two modes exist:
//! - [`AuthMode::Dev`] (the default when no JWT key is configured): the client names itself with
//!   `user`; nothing is verified beyond the shape of the name.
//! - [`AuthMode::Jwt`]: the client presents a JWT signed with HS256 (shared secret) and/or RS256
//!   (PEM public key); the user is the token's `sub` claim, `exp` is required and enforced without
//!   leeway.
//!
//! Verification runs once per connection. A [`JwtVerifier`] holds only immutable decoding keys and
//! validation settings, so it is `Send + Sync` and meant to be built once at start-up and shared
//! between shards behind an `Arc`.

use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, de::DeserializeOwned};

use crate::access::grants::Grants;

/// Longest accepted user name, in bytes.
pub const MAX_USER_BYTES: usize = 128;

/// How a connection proves who it is.
#[derive(Debug)]
pub enum AuthMode {
    /// No verification: the `user` field of `identify` is trusted as given (after
    /// [`validate_user`]). Used when no JWT key is configured.
    Dev,
    /// The client must present a JWT; the user is its `sub` claim.
    Jwt(JwtVerifier),
}

impl AuthMode {
    /// Resolves the fields of an `identify` frame to a user name.
    ///
    /// - Dev mode: `user` is required and validated with [`validate_user`]; a `token`, if any, is
    ///   ignored (a token without a user is [`AuthError::MissingUser`]).
    /// - JWT mode: `user` must be absent ([`AuthError::UserNotAllowed`]), `token` is required
    ///   ([`AuthError::MissingToken`]) and verified with [`JwtVerifier::verify`].
    pub fn identify(&self, user: Option<&str>, token: Option<&str>) -> Result<Identity, AuthError> {
        match self {
            AuthMode::Dev => {
                let user = user.ok_or(AuthError::MissingUser)?;
                validate_user(user).map_err(AuthError::InvalidUser)?;
                Ok(Identity {
                    user: user.to_owned(),
                    exp: None,
                    grants: Grants::default(),
                })
            }
            AuthMode::Jwt(verifier) => {
                if user.is_some() {
                    return Err(AuthError::UserNotAllowed);
                }
                verifier.verify_identity(token.ok_or(AuthError::MissingToken)?)
            }
        }
    }

    /// The JWT verifier (`None` in dev mode).
    pub fn verifier(&self) -> Option<&JwtVerifier> {
        match self {
            AuthMode::Dev => None,
            AuthMode::Jwt(v) => Some(v),
        }
    }
}

/// Who a connection is, and what its token grants until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name.
    pub user: String,
    /// The token's `exp`, in seconds since the Unix epoch (`None` in dev mode).
    pub exp: Option<u64>,
    /// The token's `channels`, `publish` and `send_to` claims (empty in dev mode).
    pub grants: Grants,
}

/// Why an `identify` could not be turned into a user, or why a verifier could not be built.
///
/// The [`Display`](fmt::Display) text never contains key material or the token itself, so it may
/// be used as the `message` of the error frame. [`AuthError::client_code`] gives the error `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Dev mode and `identify` has no `user`. Client: error `bad_request`, connection stays open.
    MissingUser,
    /// JWT mode and `identify` has no `token`. Client: error `bad_request`, connection stays open.
    MissingToken,
    /// JWT mode and `identify` carries a `user` (only the token may name the user). Client: error
    /// `unauthorized`, then close 1008.
    UserNotAllowed,
    /// The token is malformed, its signature does not verify, a required claim is missing or
    /// malformed, it is not valid yet (`nbf`), or its `sub` is not a valid user name; the text says
    /// which. Client: error `unauthorized`, then close 1008.
    InvalidToken(String),
    /// The token's `exp` is in the past. Client: error `unauthorized`, then close 1008.
    Expired,
    /// The token's header names an algorithm other than HS256 / RS256, or one for which no key is
    /// configured (`none` included). Client: error `unauthorized`, then close 1008.
    WrongAlgorithm,
    /// A configured key is unusable. Returned by [`JwtVerifier::new`] at start-up (a configuration
    /// error; no client involved); should verification itself hit it, the client gets error
    /// `unauthorized`, then close 1008.
    BadKey(String),
    /// Dev mode and the `user` name is not acceptable (see [`validate_user`]); the text says why.
    /// Client: error `bad_request`, connection stays open.
    InvalidUser(&'static str),
}

impl AuthError {
    /// The protocol error code the client receives: `bad_request` for a malformed `identify` that
    /// the client may correct and retry, `unauthorized` (followed by close 1008) otherwise.
    pub fn client_code(&self) -> &'static str {
        match self {
            AuthError::MissingUser | AuthError::MissingToken | AuthError::InvalidUser(_) => {
                "bad_request"
            }
            AuthError::UserNotAllowed
            | AuthError::InvalidToken(_)
            | AuthError::Expired
            | AuthError::WrongAlgorithm
            | AuthError::BadKey(_) => "unauthorized",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MissingUser => f.write_str("identify requires a user"),
            AuthError::MissingToken => f.write_str("identify requires a token"),
            AuthError::UserNotAllowed => f.write_str("user is not accepted; identify with a token"),
            AuthError::InvalidToken(why) => write!(f, "invalid token: {why}"),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::WrongAlgorithm => f.write_str("token algorithm not accepted"),
            AuthError::BadKey(why) => write!(f, "unusable JWT key: {why}"),
            AuthError::InvalidUser(why) => write!(f, "invalid user: {why}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Checks a user name: 1..=128 bytes of UTF-8 without control characters.
///
/// Returns the reason on failure, suitable for a client-facing message.
pub fn validate_user(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("user name is empty");
    }
    if name.len() > MAX_USER_BYTES {
        return Err("user name is longer than 128 bytes");
    }
    if name.chars().any(char::is_control) {
        return Err("user name contains control characters");
    }
    Ok(())
}

/// The claims this gateway reads from a connection token; `exp` (and `nbf`, if present) are checked
/// by `jsonwebtoken` itself, other claims are ignored.
#[derive(Deserialize)]
struct Claims {
    /// The user. Optional here so that its absence is reported as a missing claim rather than as a
    /// malformed token.
    sub: Option<String>,
    /// Expiry (required by the validation), seconds since the Unix epoch.
    exp: Option<u64>,
    /// Channel patterns granted for subscribe, presence and history.
    channels: Option<Vec<String>>,
    /// Channel patterns granted for publish.
    publish: Option<Vec<String>>,
    /// User patterns granted for direct messages.
    send_to: Option<Vec<String>>,
    /// Present only in subscription tokens, which are refused here.
    channel: Option<serde::de::IgnoredAny>,
}

/// One accepted algorithm: its key and the validation settings that go with it.
struct KeyedAlgorithm {
    /// Key matching the algorithm (secret for HS256, public key for RS256).
    key: DecodingKey,
    /// Validation restricted to this one algorithm.
    validation: Validation,
}

impl KeyedAlgorithm {
    fn boxed(alg: Algorithm, key: DecodingKey) -> Box<Self> {
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // No audience is configured in this gateway, so `aud` is not checked (jsonwebtoken would
        // otherwise reject every token that carries one).
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Box::new(KeyedAlgorithm { key, validation })
    }
}

/// Verifies JWTs signed with HS256 and/or RS256.
///
/// Immutable after construction; `Send + Sync`, so it can be shared between shards in an `Arc`.
pub struct JwtVerifier {
    /// HS256 shared secret, if configured (boxed: keeps [`AuthMode`] small).
    hs256: Option<Box<KeyedAlgorithm>>,
    /// RS256 public key, if configured.
    rs256: Option<Box<KeyedAlgorithm>>,
}

impl fmt::Debug for JwtVerifier {
    // Keys are deliberately not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .finish()
    }
}

impl JwtVerifier {
    /// Builds a verifier from an HS256 secret and/or an RS256 public key in PEM (`PUBLIC KEY` or
    /// `RSA PUBLIC KEY`).
    ///
    /// Fails with [`AuthError::BadKey`] if neither key is given, the secret is empty, or the PEM
    /// does not hold an RSA public key (a private key is refused: it would never verify).
    pub fn new(
        hs256_secret: Option<&[u8]>,
        rs256_public_pem: Option<&[u8]>,
    ) -> Result<Self, AuthError> {
        let hs256 = match hs256_secret {
            Some([]) => return Err(AuthError::BadKey("HS256 secret is empty".into())),
            Some(secret) => Some(KeyedAlgorithm::boxed(
                Algorithm::HS256,
                DecodingKey::from_secret(secret),
            )),
            None => None,
        };
        let rs256 = match rs256_public_pem {
            Some(pem) => {
                if contains(pem, b"PRIVATE KEY-----") {
                    return Err(AuthError::BadKey(
                        "RS256 key is a private key; configure the public key".into(),
                    ));
                }
                let key = DecodingKey::from_rsa_pem(pem).map_err(|e| {
                    AuthError::BadKey(format!("RS256 key is not an RSA public key in PEM: {e}"))
                })?;
                Some(KeyedAlgorithm::boxed(Algorithm::RS256, key))
            }
            None => None,
        };
        if hs256.is_none() && rs256.is_none() {
            return Err(AuthError::BadKey("no JWT key configured".into()));
        }
        Ok(JwtVerifier { hs256, rs256 })
    }

    /// Verifies `token` and returns its `sub`.
    ///
    /// The key is chosen by the header's `alg`: HS256 uses the secret, RS256 the public key; any
    /// other algorithm, or one without a configured key, is [`AuthError::WrongAlgorithm`]. `exp`
    /// and `sub` are required; `exp` (and `nbf` when present) are enforced with no leeway; `sub`
    /// must pass [`validate_user`].
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        self.verify_identity(token).map(|id| id.user)
    }

    /// Verifies `token` as [`JwtVerifier::verify`] does and reads its grants and expiry too; a grant
    /// claim that is malformed or over its bound makes the token invalid.
    pub fn verify_identity(&self, token: &str) -> Result<Identity, AuthError> {
        let claims: Claims = self.decode(token)?;
        if claims.channel.is_some() {
            // A subscription token opens one channel; it must not open a connection too.
            return Err(AuthError::InvalidToken(
                "a subscription token (claim channel) is not a connection token".into(),
            ));
        }
        let user = checked_sub(claims.sub)?;
        let grants = Grants::from_claims(claims.channels, claims.publish, claims.send_to)
            .map_err(AuthError::InvalidToken)?;
        Ok(Identity {
            user,
            exp: claims.exp,
            grants,
        })
    }

    /// Checks `token`'s signature, algorithm, `exp` and `nbf`, and reads its claims as `C`.
    pub fn decode<C: DeserializeOwned>(&self, token: &str) -> Result<C, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| header_error(e.kind()))?;
        let keyed = match header.alg {
            Algorithm::HS256 => self.hs256.as_deref(),
            Algorithm::RS256 => self.rs256.as_deref(),
            _ => None,
        }
        .ok_or(AuthError::WrongAlgorithm)?;
        let data = jsonwebtoken::decode::<C>(token, &keyed.key, &keyed.validation)
            .map_err(|e| decode_error(e.kind()))?;
        Ok(data.claims)
    }
}

/// The `sub` claim as a user name.
pub fn checked_sub(sub: Option<String>) -> Result<String, AuthError> {
    let sub = sub.ok_or_else(|| AuthError::InvalidToken("missing claim sub".into()))?;
    validate_user(&sub).map_err(|why| AuthError::InvalidToken(format!("bad sub claim: {why}")))?;
    Ok(sub)
}

/// Maps a failure to read the token header. A header that is well-formed JSON but does not fit
/// the schema almost always names an unknown algorithm (`none`, `XYZ`) or none at all.
fn header_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::Json(e) if e.is_data() => AuthError::WrongAlgorithm,
        _ => AuthError::InvalidToken("malformed token".into()),
    }
}

/// Maps a `jsonwebtoken` decoding failure to the client-visible error.
fn decode_error(kind: &ErrorKind) -> AuthError {
    let why = match kind {
        ErrorKind::ExpiredSignature => return AuthError::Expired,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => {
            return AuthError::WrongAlgorithm;
        }
        ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            return AuthError::BadKey("configured key rejected by the verifier".into());
        }
        ErrorKind::InvalidSignature => "signature does not verify".to_owned(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
        ErrorKind::InvalidClaimFormat(claim) => format!("malformed claim {claim}"),
        ErrorKind::Json(_) => "malformed claims".to_owned(),
        _ => "malformed token".to_owned(),
    };
    AuthError::InvalidToken(why)
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests;
