//! Unit tests of `client`.

use bytes::Bytes;

use super::*;
use crate::protocol::{Request, encode, parse_value};

/// What the server's own parser makes of a request built here.
fn server_view(text: &str) -> (Option<String>, String) {
    let mut buf = text.as_bytes().to_vec();
    let v = parse_value(&mut buf).expect("valid JSON");
    let (id, req) = Request::from_value(&v).expect("a valid request");
    (id.map(String::from), format!("{req:?}"))
}

/// The payload of a server frame built by `encode` (short: 2- or 4-byte header).
fn payload(frame: &Bytes) -> Vec<u8> {
    let start = if frame[1] == 126 { 4 } else { 2 };
    frame[start..].to_vec()
}

#[test]
fn every_builder_is_accepted_by_the_server_parser() {
    let (id, r) = server_view(&identify_user(Some("i1"), "al\"ice"));
    assert_eq!(id.as_deref(), Some("i1"));
    assert!(r.contains("Identify") && r.contains("al\\\"ice"), "{r}");
    assert!(
        server_view(&identify_token(None, "a.b.c"))
            .1
            .contains("a.b.c")
    );
    let (id, r) = server_view(&send(Some("m1"), "bob", r#"{"n":[1,2]}"#));
    assert_eq!(id.as_deref(), Some("m1"));
    assert!(r.starts_with("Send") && r.contains("bob"), "{r}");
    assert!(
        server_view(&subscribe(Some("s"), "room:1"))
            .1
            .starts_with("Subscribe")
    );
    assert!(
        server_view(&unsubscribe(None, "room:1"))
            .1
            .starts_with("Unsubscribe")
    );
    let r = server_view(&publish(Some("p"), "room\\1", "null")).1;
    assert!(r.starts_with("Publish") && r.contains(r#"room\\1"#), "{r}");
    let r = server_view(&presence_users(Some("q"), &["bob", "carol"])).1;
    assert!(r.contains("PresenceUsers") && r.contains("carol"), "{r}");
    assert!(
        server_view(&presence_channel(None, "c"))
            .1
            .starts_with("PresenceChannel")
    );
    assert_eq!(
        server_view(&ping(Some("x"))),
        (Some("x".into()), "Ping".into())
    );
    assert_eq!(ping(None), r#"{"op":"ping"}"#);
}

#[test]
fn reads_every_server_frame_the_encoder_writes() {
    let mut b = payload(&encode::ready(
        Some("i1"),
        "alice",
        "00ab",
        "n1",
        (1, 25000),
        None,
    ));
    match ServerFrame::parse(&mut b).unwrap() {
        ServerFrame::Ready {
            id,
            user,
            session,
            node,
            shard,
            heartbeat_ms,
        } => {
            assert_eq!(id.as_deref(), Some("i1"));
            assert_eq!((&*user, &*session, &*node), ("alice", "00ab", "n1"));
            assert_eq!((shard, heartbeat_ms), (1, 25000));
        }
        f => panic!("{f:?}"),
    }
    let mut b = payload(&encode::ack(Some("m1"), "delivered", Some(2)));
    let f = ServerFrame::parse(&mut b).unwrap();
    assert_eq!(f.id(), Some("m1"));
    assert!(matches!(
        f,
        ServerFrame::Ack {
            status: AckStatus::Delivered,
            conns: Some(2),
            ..
        }
    ));
    let mut b = payload(&encode::ack(None, "subscribed", None));
    assert!(matches!(
        ServerFrame::parse(&mut b).unwrap(),
        ServerFrame::Ack {
            id: None,
            status: AckStatus::Subscribed,
            conns: None
        }
    ));
    let mut data = br#"[7,"x\"y"]"#.to_vec();
    let data = simd_json::to_borrowed_value(&mut data).unwrap();
    let mut b = payload(&encode::channel_message("room:1", "alice", &data));
    match ServerFrame::parse(&mut b).unwrap() {
        ServerFrame::Message {
            from,
            channel,
            data,
            ..
        } => {
            assert_eq!(
                (from.as_deref(), channel.as_deref()),
                (Some("alice"), Some("room:1"))
            );
            assert_eq!(data[0].as_u64(), Some(7));
            assert_eq!(data[1].as_str(), Some("x\"y"));
        }
        f => panic!("{f:?}"),
    }
    let mut b = payload(&encode::direct_message("bob", &data));
    assert!(matches!(
        ServerFrame::parse(&mut b).unwrap(),
        ServerFrame::Message {
            channel: None,
            seq: None,
            ..
        }
    ));
    let numbered = crate::history::sequenced(&encode::direct_message("bob", &data), 9, "ab12");
    let mut b = payload(&numbered);
    match ServerFrame::parse(&mut b).unwrap() {
        ServerFrame::Message { seq, epoch, .. } => {
            assert_eq!((seq, epoch.as_deref()), (Some(9), Some("ab12")))
        }
        f => panic!("{f:?}"),
    }
    // A backend's message (HTTP API) has no `from`.
    let mut b = payload(&encode::backend_message(Some("room:1"), r#"{"k":1}"#));
    match ServerFrame::parse(&mut b).unwrap() {
        ServerFrame::Message { from, channel, .. } => {
            assert_eq!((from, channel.as_deref()), (None, Some("room:1")))
        }
        f => panic!("{f:?}"),
    }
}

#[test]
fn reads_presence_pong_and_errors() {
    let mut b = payload(&encode::presence_users(
        Some("q1"),
        [("bob", true), ("carol", false)],
    ));
    match ServerFrame::parse(&mut b).unwrap() {
        ServerFrame::PresenceUsers { id, mut online } => {
            assert_eq!(id.as_deref(), Some("q1"));
            online.sort();
            assert_eq!(online, vec![("bob".into(), true), ("carol".into(), false)]);
        }
        f => panic!("{f:?}"),
    }
    let mut b = payload(&encode::presence_channel(None, "r", &["a", "b"]));
    match ServerFrame::parse(&mut b).unwrap() {
        ServerFrame::PresenceChannel {
            channel,
            users,
            count,
            ..
        } => {
            assert_eq!((&*channel, users.len(), count), ("r", 2, 2));
        }
        f => panic!("{f:?}"),
    }
    let mut b = payload(&encode::pong(Some("x")));
    assert_eq!(ServerFrame::parse(&mut b).unwrap().id(), Some("x"));
    let mut b = payload(&encode::error(None, ErrorCode::RateLimited, "slow down"));
    assert!(matches!(
        ServerFrame::parse(&mut b).unwrap(),
        ServerFrame::Error {
            id: None,
            code: ErrorCode::RateLimited,
            ..
        }
    ));
}

#[test]
fn refuses_what_is_not_a_server_frame() {
    let parse = |s: &str| ServerFrame::parse(&mut s.as_bytes().to_vec()).map(|_| ());
    assert_eq!(parse("{"), Err(FrameError::Json));
    assert_eq!(parse("[1]"), Err(FrameError::NotObject));
    assert_eq!(parse(r#"{"id":"x"}"#), Err(FrameError::Missing("op")));
    assert_eq!(
        parse(r#"{"op":"fly"}"#),
        Err(FrameError::UnknownOp("fly".into()))
    );
    assert_eq!(
        parse(r#"{"op":"ack","status":"maybe"}"#),
        Err(FrameError::Invalid("status"))
    );
    assert_eq!(
        parse(r#"{"op":"error","code":"nope"}"#),
        Err(FrameError::Invalid("code"))
    );
    assert_eq!(
        parse(r#"{"op":"message","from":"a"}"#),
        Err(FrameError::Missing("data"))
    );
}
