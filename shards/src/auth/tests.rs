//! Unit tests of `auth`.

use super::*;
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};

const RS_PRIVATE: &[u8] = include_bytes!("../../../tests/fixtures/jwt_rs256_private.pem");
const RS_PUBLIC: &[u8] = include_bytes!("../../../tests/fixtures/jwt_rs256_public.pem");
const RS_OTHER: &[u8] = include_bytes!("../../../tests/fixtures/jwt_rs256_other_private.pem");
const SECRET: &[u8] = b"test-secret-0123456789";

fn hs(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn rs(claims: &Value, private_pem: &[u8]) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem).unwrap();
    encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

/// Claims with `sub` and an `exp` one hour ahead.
fn valid(sub: &str) -> Value {
    json!({"sub": sub, "exp": get_current_timestamp() + 3600})
}

/// Claims with `sub` and an `exp` one second in the past.
fn expired(sub: &str) -> Value {
    json!({"sub": sub, "exp": get_current_timestamp() - 1})
}

fn both() -> JwtVerifier {
    JwtVerifier::new(Some(SECRET), Some(RS_PUBLIC)).unwrap()
}

fn is_invalid(result: Result<String, AuthError>) -> bool {
    matches!(result, Err(AuthError::InvalidToken(_)))
}

fn is_bad_key(result: Result<JwtVerifier, AuthError>) -> bool {
    matches!(result, Err(AuthError::BadKey(_)))
}

#[test]
fn verifier_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<JwtVerifier>();
    check::<AuthMode>();
}

#[test]
fn hs256_valid() {
    let token = hs(&valid("alice"), SECRET);
    assert_eq!(both().verify(&token).unwrap(), "alice");
    let only_hs = JwtVerifier::new(Some(SECRET), None).unwrap();
    assert_eq!(only_hs.verify(&token).unwrap(), "alice");
}

#[test]
fn hs256_expired() {
    let token = hs(&expired("alice"), SECRET);
    assert_eq!(both().verify(&token), Err(AuthError::Expired));
}

#[test]
fn hs256_wrong_secret() {
    assert!(is_invalid(both().verify(&hs(&valid("alice"), b"other"))));
    // The signature is checked before `exp`.
    assert!(is_invalid(both().verify(&hs(&expired("alice"), b"other"))));
}

#[test]
fn missing_claims() {
    let no_sub = hs(&json!({"exp": get_current_timestamp() + 3600}), SECRET);
    let missing_sub = AuthError::InvalidToken("missing claim sub".into());
    assert_eq!(both().verify(&no_sub), Err(missing_sub));
    let no_exp = hs(&json!({"sub": "alice"}), SECRET);
    let missing_exp = AuthError::InvalidToken("missing claim exp".into());
    assert_eq!(both().verify(&no_exp), Err(missing_exp));
}

#[test]
fn bad_sub() {
    let number = hs(
        &json!({"sub": 42, "exp": get_current_timestamp() + 3600}),
        SECRET,
    );
    assert!(is_invalid(both().verify(&number)));
    assert!(is_invalid(both().verify(&hs(&valid(""), SECRET))));
    assert!(is_invalid(both().verify(&hs(&valid("a\nb"), SECRET))));
}

#[test]
fn a_subscription_token_is_no_connection_token() {
    let mut claims = valid("alice");
    claims["channel"] = json!("room:1");
    assert!(is_invalid(both().verify(&hs(&claims, SECRET))));
}

#[test]
fn nbf_enforced_and_aud_ignored() {
    let mut claims = valid("alice");
    claims["nbf"] = json!(get_current_timestamp() + 3600);
    assert!(is_invalid(both().verify(&hs(&claims, SECRET))));
    let mut claims = valid("alice");
    claims["aud"] = json!("somebody");
    assert_eq!(both().verify(&hs(&claims, SECRET)).unwrap(), "alice");
}

#[test]
fn alg_none_is_wrong_algorithm() {
    let token = hs(&valid("alice"), SECRET);
    let payload = token.split('.').nth(1).unwrap();
    // {"alg":"none","typ":"JWT"} and {"typ":"JWT"}, unsigned.
    for header in ["eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJ0eXAiOiJKV1QifQ"] {
        let unsigned = format!("{header}.{payload}.");
        assert_eq!(both().verify(&unsigned), Err(AuthError::WrongAlgorithm));
    }
}

#[test]
fn other_or_unconfigured_algorithms() {
    let claims = valid("alice");
    let key = EncodingKey::from_secret(SECRET);
    let hs384 = encode(&Header::new(Algorithm::HS384), &claims, &key).unwrap();
    assert_eq!(both().verify(&hs384), Err(AuthError::WrongAlgorithm));
    let only_rs = JwtVerifier::new(None, Some(RS_PUBLIC)).unwrap();
    let hs256 = hs(&claims, SECRET);
    assert_eq!(only_rs.verify(&hs256), Err(AuthError::WrongAlgorithm));
    let only_hs = JwtVerifier::new(Some(SECRET), None).unwrap();
    let rs256 = rs(&claims, RS_PRIVATE);
    assert_eq!(only_hs.verify(&rs256), Err(AuthError::WrongAlgorithm));
}

#[test]
fn rs256_valid() {
    let token = rs(&valid("bob"), RS_PRIVATE);
    assert_eq!(both().verify(&token).unwrap(), "bob");
    let only_rs = JwtVerifier::new(None, Some(RS_PUBLIC)).unwrap();
    assert_eq!(only_rs.verify(&token).unwrap(), "bob");
}

#[test]
fn rs256_wrong_key_and_expired() {
    assert!(is_invalid(both().verify(&rs(&valid("bob"), RS_OTHER))));
    let token = rs(&expired("bob"), RS_PRIVATE);
    assert_eq!(both().verify(&token), Err(AuthError::Expired));
}

#[test]
fn malformed_tokens() {
    let v = both();
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "....",
        "eyJhbGciOiJIUzI1NiJ9.@@@.x",
    ] {
        let result = v.verify(token);
        let ok = matches!(
            result,
            Err(AuthError::InvalidToken(_) | AuthError::WrongAlgorithm)
        );
        assert!(ok, "{token:?}: {result:?}");
    }
    for good in [hs(&valid("alice"), SECRET), rs(&valid("bob"), RS_PRIVATE)] {
        for i in 0..good.len() {
            assert!(v.verify(&good[..i]).is_err(), "cut at {i}");
            let mut changed = good.clone().into_bytes();
            changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(changed).unwrap();
            assert!(v.verify(&changed).is_err(), "changed at {i}");
        }
    }
}

#[test]
fn bad_keys() {
    assert!(is_bad_key(JwtVerifier::new(None, None)));
    assert!(is_bad_key(JwtVerifier::new(Some(b""), None)));
    assert!(is_bad_key(JwtVerifier::new(None, Some(b"not a pem"))));
    assert!(is_bad_key(JwtVerifier::new(None, Some(RS_PRIVATE))));
}

#[test]
fn dev_mode() {
    let dev = AuthMode::Dev;
    assert_eq!(dev.identify(Some("alice"), None).unwrap().user, "alice");
    assert_eq!(
        dev.identify(Some("alice"), Some("x")).unwrap().user,
        "alice"
    );
    assert_eq!(dev.identify(None, Some("x")), Err(AuthError::MissingUser));
    assert_eq!(dev.identify(None, None), Err(AuthError::MissingUser));
    let empty = dev.identify(Some(""), None);
    assert!(matches!(empty, Err(AuthError::InvalidUser(_))));
}

#[test]
fn jwt_mode() {
    let mode = AuthMode::Jwt(both());
    let token = hs(&valid("alice"), SECRET);
    let id = mode.identify(None, Some(&token)).unwrap();
    assert_eq!((id.user.as_str(), id.grants.is_empty()), ("alice", true));
    assert!(id.exp.is_some());
    let with_user = mode.identify(Some("alice"), Some(&token));
    assert_eq!(with_user, Err(AuthError::UserNotAllowed));
    let only_user = mode.identify(Some("alice"), None);
    assert_eq!(only_user, Err(AuthError::UserNotAllowed));
    assert_eq!(mode.identify(None, None), Err(AuthError::MissingToken));
}

#[test]
fn user_names() {
    for good in [
        "a",
        "alice@example.com",
        "名前",
        &"x".repeat(128),
        &"é".repeat(64),
    ] {
        assert_eq!(validate_user(good), Ok(()), "{good:?}");
    }
    // "語" is 3 bytes: 43 of them are 129 bytes.
    let too_long = ["", &"x".repeat(129), &"語".repeat(43)];
    let control = ["a\0b", "a\nb", "tab\t", "del\u{7f}", "c1\u{85}"];
    for bad in too_long.into_iter().chain(control) {
        assert!(validate_user(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn client_codes_and_display() {
    assert_eq!(AuthError::MissingUser.client_code(), "bad_request");
    assert_eq!(AuthError::InvalidUser("x").client_code(), "bad_request");
    assert_eq!(AuthError::Expired.client_code(), "unauthorized");
    assert_eq!(AuthError::UserNotAllowed.client_code(), "unauthorized");
    assert_eq!(AuthError::Expired.to_string(), "token expired");
    let e: Box<dyn std::error::Error> = Box::new(AuthError::WrongAlgorithm);
    assert!(!e.to_string().is_empty());
    assert!(!format!("{:?}", both()).contains("secret"));
}
