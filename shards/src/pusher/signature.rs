//! Pusher's HMAC-SHA256 signatures, as the Channels documentation specifies them ("auth signatures",
//! "HTTP API reference", "webhooks"), checked in constant time.
//!
//! - Channel authorization: `<key>:<hex HMAC(secret, "<socket_id>:<channel>[:<channel_data>]")>`.
//! - User authentication (`pusher:signin`): `<key>:<hex HMAC(secret, "<socket_id>::user::<user_data>")>`.
//! - HTTP API: `auth_signature` = hex `HMAC(secret, "<METHOD>\n<path>\n<query>")`, where the query is
//!   every parameter but `auth_signature`, keys lower-cased, sorted by key, `key=value` joined by `&`;
//!   `auth_key` must be the app's, `auth_timestamp` within [`MAX_CLOCK_SKEW_S`] of now, `auth_version`
//!   `1.0`, and `body_md5` the hex MD5 of a non-empty body.
//! - Webhooks: `X-Pusher-Signature` = hex HMAC(secret, body).
//!
//! A signature is compared by the MAC itself (`verify_slice`, constant time), never by string
//! equality, so its timing tells an attacker nothing about how close a guess was.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far `auth_timestamp` may be from the server's clock, in seconds (Pusher's own bound).
pub const MAX_CLOCK_SKEW_S: u64 = 600;

/// The MAC of `parts` (concatenated) under `secret`.
fn mac(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Bytes of a hex string (either case); `None` when it is not hex of whole bytes.
fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// True when `hex_sig` is the hex MAC of `parts` under `secret` (constant time in the MAC).
fn verify(secret: &[u8], parts: &[&[u8]], hex_sig: &str) -> bool {
    match unhex(hex_sig) {
        Some(sig) => mac(secret, parts).verify_slice(&sig).is_ok(),
        None => false,
    }
}

/// The string a channel authorization signs: `socket_id:channel`, plus `:channel_data` for presence.
fn channel_parts<'a>(
    socket_id: &'a str,
    channel: &'a str,
    channel_data: Option<&'a str>,
) -> [&'a [u8]; 5] {
    let (colon, data): (&[u8], &[u8]) = match channel_data {
        Some(d) => (b":", d.as_bytes()),
        None => (b"", b""),
    };
    [socket_id.as_bytes(), b":", channel.as_bytes(), colon, data]
}

/// `<key>:<signature>` authorizing `socket_id` on `channel` (what a backend's auth endpoint returns).
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let parts = channel_parts(socket_id, channel, channel_data);
    let sig = mac(secret.as_bytes(), &parts).finalize().into_bytes();
    format!("{key}:{}", hex(&sig))
}

/// Checks a `pusher:subscribe`'s `auth` for a private or presence channel.
pub fn verify_channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> bool {
    let Some(sig) = auth.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
        return false;
    };
    let parts = channel_parts(socket_id, channel, channel_data);
    verify(secret.as_bytes(), &parts, sig)
}

/// `<key>:<signature>` signing `socket_id` in as `user_data` (what a backend's user authentication
/// endpoint returns).
pub fn user_auth(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    let parts = [socket_id.as_bytes(), b"::user::", user_data.as_bytes()];
    let sig = mac(secret.as_bytes(), &parts).finalize().into_bytes();
    format!("{key}:{}", hex(&sig))
}

/// Checks a `pusher:signin`'s `auth` over `socket_id::user::user_data`.
pub fn verify_user_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> bool {
    let Some(sig) = auth.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
        return false;
    };
    let parts = [socket_id.as_bytes(), b"::user::", user_data.as_bytes()];
    verify(secret.as_bytes(), &parts, sig)
}

/// The `X-Pusher-Signature` of a webhook body.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    hex(&mac(secret.as_bytes(), &[body]).finalize().into_bytes())
}

/// Why a signed HTTP API request was refused (the HTTP status is 401 for all but the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiAuthError {
    /// A required parameter is missing or appears twice.
    Missing(&'static str),
    /// `auth_key` is not the app's key.
    UnknownKey,
    /// `auth_version` is not `1.0`.
    Version,
    /// `auth_timestamp` is not a number or is more than [`MAX_CLOCK_SKEW_S`] from now.
    Timestamp,
    /// `body_md5` does not match the body.
    BodyMd5,
    /// `auth_signature` does not verify.
    Signature,
}

impl ApiAuthError {
    /// The message of the JSON error body.
    pub fn message(self) -> &'static str {
        match self {
            ApiAuthError::Missing(_) => "missing or repeated auth parameter",
            ApiAuthError::UnknownKey => "unknown auth_key",
            ApiAuthError::Version => "auth_version must be 1.0",
            ApiAuthError::Timestamp => "auth_timestamp is not within 600 s of the server's clock",
            ApiAuthError::BodyMd5 => "body_md5 does not match the body",
            ApiAuthError::Signature => "invalid auth_signature",
        }
    }
}

/// Checks a signed HTTP API request: `query` holds its decoded query parameters in any order, `now`
/// is the server's Unix time in seconds.
pub fn verify_api_request(
    (key, secret): (&str, &str),
    (method, path): (&str, &str),
    query: &[(&str, &str)],
    body: &[u8],
    now: u64,
) -> Result<(), ApiAuthError> {
    let one = |name: &'static str| {
        let mut found = query.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
        match (found.next(), found.next()) {
            (Some((_, v)), None) => Ok(*v),
            _ => Err(ApiAuthError::Missing(name)),
        }
    };
    if one("auth_key")? != key {
        return Err(ApiAuthError::UnknownKey);
    }
    if one("auth_version")? != "1.0" {
        return Err(ApiAuthError::Version);
    }
    let ts: u64 = one("auth_timestamp")?
        .parse()
        .map_err(|_| ApiAuthError::Timestamp)?;
    if ts.abs_diff(now) > MAX_CLOCK_SKEW_S {
        return Err(ApiAuthError::Timestamp);
    }
    if !body.is_empty() {
        let want = hex(&Md5::digest(body));
        if one("body_md5")? != want {
            return Err(ApiAuthError::BodyMd5);
        }
    }
    let signature = one("auth_signature")?;
    let signed = string_to_sign(method, path, query);
    if verify(secret.as_bytes(), &[signed.as_bytes()], signature) {
        Ok(())
    } else {
        Err(ApiAuthError::Signature)
    }
}

/// `"<METHOD>\n<path>\n<query>"`: every parameter but `auth_signature`, keys lower-cased, sorted.
fn string_to_sign(method: &str, path: &str, query: &[(&str, &str)]) -> String {
    let mut params: Vec<(String, &str)> = query
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .collect();
    params.sort_unstable();
    let mut signed = format!("{method}\n{path}\n");
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            signed.push('&');
        }
        signed.push_str(k);
        signed.push('=');
        signed.push_str(v);
    }
    signed
}

/// The query string of a signed HTTP API request (as the server SDKs build it): `params`, then
/// `auth_key`, `auth_timestamp` (`now`, Unix seconds), `auth_version`, `body_md5` (for a body) and
/// `auth_signature`. Values are not escaped: give them in the URL-safe form they are sent in.
pub fn sign_api_request(
    (key, secret): (&str, &str),
    (method, path): (&str, &str),
    params: &[(&str, &str)],
    body: &[u8],
    now: u64,
) -> String {
    let now = now.to_string();
    let md5 = hex(&Md5::digest(body));
    let mut query: Vec<(&str, &str)> = params.to_vec();
    query.extend([
        ("auth_key", key),
        ("auth_timestamp", now.as_str()),
        ("auth_version", "1.0"),
    ]);
    if !body.is_empty() {
        query.push(("body_md5", md5.as_str()));
    }
    let signed = string_to_sign(method, path, &query);
    let signature = hex(&mac(secret.as_bytes(), &[signed.as_bytes()])
        .finalize()
        .into_bytes());
    let mut out: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push(format!("auth_signature={signature}"));
    out.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The credentials of the worked examples in Pusher's documentation.
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn private_channel_example_from_the_documentation() {
        let auth = channel_auth(KEY, SECRET, "1234.1234", "private-foobar", None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        // Upper-case hex is the same signature.
        let upper = format!("{KEY}:{}", auth[KEY.len() + 1..].to_uppercase());
        for good in [&auth, &upper] {
            let ok = verify_channel_auth(KEY, SECRET, "1234.1234", "private-foobar", None, good);
            assert!(ok, "{good}");
        }
        for (socket, channel, auth) in [
            ("1234.1235", "private-foobar", auth.as_str()),
            ("1234.1234", "private-foobaz", auth.as_str()),
            ("1234.1234", "private-foobar", &auth[..auth.len() - 2]),
            ("1234.1234", "private-foobar", "other-key:58df8b0c"),
            ("1234.1234", "private-foobar", "278d425bdf160c739803"),
            ("1234.1234", "private-foobar", "278d425bdf160c739803:zz"),
        ] {
            assert!(
                !verify_channel_auth(KEY, SECRET, socket, channel, None, auth),
                "{auth}"
            );
        }
    }

    #[test]
    fn presence_and_user_signatures() {
        // Reference values computed with Python's hmac module (an independent implementation).
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth = channel_auth(KEY, SECRET, "1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            &auth[KEY.len() + 1..],
            "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            "1234.1234",
            "presence-foobar",
            Some(data),
            &auth
        ));
        // The channel data is signed: another member's data does not verify.
        let other = r#"{"user_id":11}"#;
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "1234.1234",
            "presence-foobar",
            Some(other),
            &auth
        ));
        let user = r#"{"id":"12345"}"#;
        let sig = "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba";
        assert_eq!(
            user_auth(KEY, SECRET, "1234.1234", user),
            format!("{KEY}:{sig}")
        );
        assert!(verify_user_auth(
            KEY,
            SECRET,
            "1234.1234",
            user,
            &format!("{KEY}:{sig}")
        ));
        assert!(!verify_user_auth(
            KEY,
            SECRET,
            "1234.1234",
            r#"{"id":"1"}"#,
            &format!("{KEY}:{sig}")
        ));
    }

    /// The worked example of Pusher's HTTP API reference: app 3 triggers `foo` on `project-3`.
    #[test]
    fn http_api_example_from_the_documentation() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(hex(&Md5::digest(body)), "ec365a775a4cd0599faeb73354201b6f");
        let sig = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
        let query = [
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
            ("auth_signature", sig),
        ];
        let creds = (KEY, SECRET);
        let at = ("POST", "/apps/3/events");
        let now = 1353088179 + 30;
        assert_eq!(verify_api_request(creds, at, &query, body, now), Ok(()));
        // Signing gives the documentation's signature.
        let signed = sign_api_request(creds, at, &[], body, 1353088179);
        assert!(
            signed.ends_with(&format!("&auth_signature={sig}")),
            "{signed}"
        );
        // Parameter order does not matter.
        let mut reversed = query;
        reversed.reverse();
        assert_eq!(verify_api_request(creds, at, &reversed, body, now), Ok(()));
        // Every field is bound.
        let late = 1353088179 + MAX_CLOCK_SKEW_S + 1;
        assert_eq!(
            verify_api_request(creds, at, &query, body, late),
            Err(ApiAuthError::Timestamp)
        );
        let other_body = br#"{"name":"foo","channels":["project-4"],"data":"{}"}"#;
        let e = verify_api_request(creds, at, &query, other_body, now);
        assert_eq!(e, Err(ApiAuthError::BodyMd5));
        let other_path = ("POST", "/apps/4/events");
        let e = verify_api_request(creds, other_path, &query, body, now);
        assert_eq!(e, Err(ApiAuthError::Signature));
        let e = verify_api_request(("other", SECRET), at, &query, body, now);
        assert_eq!(e, Err(ApiAuthError::UnknownKey));
        let e = verify_api_request((KEY, "wrong"), at, &query, body, now);
        assert_eq!(e, Err(ApiAuthError::Signature));
        let mut extra = query.to_vec();
        extra.push(("info", "user_count"));
        let e = verify_api_request(creds, at, &extra, body, now);
        assert_eq!(e, Err(ApiAuthError::Signature), "an unsigned parameter");
        let twice = [&query[..], &[("auth_key", KEY)]].concat();
        let e = verify_api_request(creds, at, &twice, body, now);
        assert_eq!(e, Err(ApiAuthError::Missing("auth_key")));
        let no_sig = &query[..4];
        let e = verify_api_request(creds, at, no_sig, body, now);
        assert_eq!(e, Err(ApiAuthError::Missing("auth_signature")));
    }

    #[test]
    fn webhook_signature_is_the_hmac_of_the_body() {
        let body = br#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;
        let sig = webhook_signature(SECRET, body);
        // Computed with Python's hmac module.
        assert_eq!(
            sig,
            "709fdb84c03664445f7698120b0edf0acc1ab1c8c6e93a0368c61841d6b998aa"
        );
        assert!(verify(SECRET.as_bytes(), &[body], &sig));
        assert!(!verify(b"other", &[body], &sig));
    }
}
