//! JWT minting for the auth tests (HS256 from a secret, RS256 from the PEM fixtures) and fixture paths.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

/// Path of a file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// An HS256 JWT for `sub` expiring `exp_offset` seconds from now.
pub fn hs256_token(secret: &str, sub: &str, exp_offset: i64) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let claims = json!({"sub": sub, "exp": unix_now() + exp_offset, "iat": unix_now()});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode HS256 token")
}

/// An RS256 JWT for `sub` expiring `exp_offset` seconds from now, signed with the PEM private key file.
pub fn rs256_token(private_pem: &Path, sub: &str, exp_offset: i64) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let pem = std::fs::read(private_pem).expect("read private key fixture");
    let key = EncodingKey::from_rsa_pem(&pem).expect("parse private key fixture");
    let claims = json!({"sub": sub, "exp": unix_now() + exp_offset, "iat": unix_now()});
    encode(&Header::new(Algorithm::RS256), &claims, &key).expect("encode RS256 token")
}

/// An HS256 JWT for `sub` expiring `exp_offset` seconds from now, with `extra` claims merged in
/// (grants: `channels`, `publish`, `send_to`; a subscription token's `channel`).
pub fn hs256_claims(secret: &str, sub: &str, exp_offset: i64, extra: serde_json::Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let mut claims = json!({"sub": sub, "exp": unix_now() + exp_offset, "iat": unix_now()});
    if let (Some(all), Some(more)) = (claims.as_object_mut(), extra.as_object()) {
        all.extend(more.clone());
    }
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode HS256 token")
}
