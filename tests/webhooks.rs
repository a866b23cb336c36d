//! Webhooks on one node, checked at a real HTTP receiver: every Pusher event, signed with the app's
//! secret and batched; the grace (a quick return sends nothing, a real departure is sent once after
//! it); retries after failures; protocol v1's user_online/user_offline signed with the target's
//! secret. The Node SDK's own `webhook().isValid()` is run on them in tests/pusher_clients.rs.

mod common;

use std::time::Duration;

use common::hooks::Receiver;
use common::pusher::{connect, subscribe, subscribe_with};
use common::{Node, NodeOpts};
use serde_json::{Value, json};
use shards::pusher::signature::{channel_auth, webhook_signature};

/// Long enough for a reconnect on a loaded CI machine to come back within it.
const GRACE_MS: u64 = 800;

fn node(receiver: &Receiver, extra: impl FnOnce(NodeOpts) -> NodeOpts) -> Node {
    let apps = format!(
        r#"[{{ id = "1", key = "k1", secret = "s1", webhooks = [{{ url = "{}" }}] }}]"#,
        receiver.url()
    );
    Node::start(extra(
        NodeOpts::new()
            .shards(2)
            .set("pusher.apps", apps)
            .set("webhook_delivery.grace_ms", GRACE_MS)
            .set("webhook_delivery.batch_ms", 20),
    ))
}

/// The names of `events`, with their channel or user.
fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let what = e["channel"].as_str().or(e["user"].as_str()).unwrap_or("");
            match e["user_id"].as_str() {
                Some(u) => format!("{} {what} {u}", e["name"].as_str().unwrap_or("?")),
                None => format!("{} {what}", e["name"].as_str().unwrap_or("?")),
            }
        })
        .collect()
}

#[test]
fn pusher_events_are_signed_and_graced() {
    let receiver = Receiver::start();
    let node = node(&receiver, |o| o);
    let (mut a, id_a) = connect(&node, "k1");
    subscribe(
        &mut a,
        "private-chat",
        Some(&channel_auth("k1", "s1", &id_a, "private-chat", None)),
    );
    a.send_json(&json!({"event": "client-typing", "channel": "private-chat", "data": {"x": 1}}));
    let cd = json!({"user_id": "u1"}).to_string();
    let auth = channel_auth("k1", "s1", &id_a, "presence-room", Some(&cd));
    let ok = subscribe_with(&mut a, "presence-room", Some(&auth), Some(&cd));
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    let events = receiver.wait_events(4, Duration::from_secs(5));
    // Events of different shards (and POSTs) have no order between them: compared as sets.
    let mut got = names(&events);
    got.sort();
    assert_eq!(
        got,
        [
            "channel_occupied presence-room",
            "channel_occupied private-chat",
            "client_event private-chat",
            "member_added presence-room u1",
        ],
        "{events:?}"
    );
    let client = events
        .iter()
        .find(|e| e["name"] == "client_event")
        .expect("client_event");
    assert_eq!(
        (client["event"].as_str(), client["socket_id"].as_str()),
        (Some("client-typing"), Some(id_a.as_str()))
    );
    assert_eq!(
        serde_json::from_str::<Value>(client["data"].as_str().unwrap()).unwrap(),
        json!({"x": 1})
    );
    for r in receiver.received() {
        assert_eq!(r.headers["x-pusher-key"], "k1");
        assert_eq!(
            r.headers["x-pusher-signature"],
            webhook_signature("s1", &r.body)
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(
            body["time_ms"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000_000),
            "{body}"
        );
    }
    // A page reload: leave and come back within the grace. Nothing is sent.
    drop(a);
    let (mut b, id_b) = connect(&node, "k1");
    subscribe(
        &mut b,
        "private-chat",
        Some(&channel_auth("k1", "s1", &id_b, "private-chat", None)),
    );
    let auth = channel_auth("k1", "s1", &id_b, "presence-room", Some(&cd));
    subscribe_with(&mut b, "presence-room", Some(&auth), Some(&cd));
    std::thread::sleep(Duration::from_millis(GRACE_MS * 2));
    assert_eq!(
        receiver.events().len(),
        4,
        "{:?}",
        names(&receiver.events())
    );
    // A real departure: sent once, after the grace.
    b.close();
    let events = receiver.wait_events(7, Duration::from_secs(5));
    let mut gone = names(&events[4..]);
    gone.sort();
    assert_eq!(
        gone,
        [
            "channel_vacated presence-room",
            "channel_vacated private-chat",
            "member_removed presence-room u1"
        ]
    );
    std::thread::sleep(Duration::from_millis(GRACE_MS));
    assert_eq!(receiver.events().len(), 7);
}

#[test]
fn failed_posts_are_retried_and_counted() {
    let receiver = Receiver::start();
    receiver.fail_next(&[500, 503]);
    let node = node(&receiver, |o| o);
    let (mut a, _) = connect(&node, "k1");
    subscribe(&mut a, "news", None);
    let events = receiver.wait_events(1, Duration::from_secs(10));
    assert_eq!(names(&events), ["channel_occupied news"]);
    assert_eq!(node.metric_sum("gateway_webhooks_retried_total", &[]), 2.0);
    assert_eq!(node.metric_sum("gateway_webhooks_failed_total", &[]), 2.0);
    assert_eq!(node.metric_sum("gateway_webhooks_sent_total", &[]), 1.0);
}

#[test]
fn protocol_v1_users_come_online_and_go_offline_once() {
    let receiver = Receiver::start();
    let url = receiver.url();
    let node = node(&receiver, |o| {
        o.set(
            "webhooks",
            format!(r#"[{{ url = "{url}", secret = "v1-secret", events = ["user_online", "user_offline"] }}]"#),
        )
    });
    let tab1 = node.identified("alice");
    let tab2 = node.identified("alice");
    let events = receiver.wait_events(1, Duration::from_secs(5));
    assert_eq!(names(&events), ["user_online alice"]);
    // One tab closes: alice is still online. A reload of the other within the grace: nothing.
    tab1.close();
    tab2.close();
    let back = node.identified("alice");
    std::thread::sleep(Duration::from_millis(GRACE_MS * 2));
    assert_eq!(names(&receiver.events()), ["user_online alice"]);
    back.close();
    let events = receiver.wait_events(2, Duration::from_secs(5));
    assert_eq!(names(&events), ["user_online alice", "user_offline alice"]);
    for r in receiver.received() {
        assert_eq!(
            r.headers["x-gateway-signature"],
            webhook_signature("v1-secret", &r.body)
        );
        assert!(!r.headers.contains_key("x-pusher-key"));
    }
}
