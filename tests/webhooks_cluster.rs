//! Webhooks across two nodes on one real redis-server: each occupancy, presence and online event is
//! decided once for the cluster (not once per node), a return on another node within the grace
//! cancels a going, and a SIGKILLed node's channels, members and users are vacated, removed and
//! taken offline by the survivor.

mod common;

use std::time::Duration;

use common::hooks::Receiver;
use common::pusher::{connect, subscribe, subscribe_with};
use common::redis::RedisServer;
use common::{Node, NodeOpts};
use serde_json::{Value, json};
use shards::pusher::signature::channel_auth;

/// Long enough for a reconnect on a loaded CI machine to come back within it.
const GRACE_MS: u64 = 800;

fn node(redis: &RedisServer, receiver: &Receiver) -> Node {
    let url = receiver.url();
    let apps =
        format!(r#"[{{ id = "1", key = "k1", secret = "s1", webhooks = [{{ url = "{url}" }}] }}]"#);
    Node::start(
        NodeOpts::new()
            .shards(2)
            .cluster(&redis.url())
            .set("pusher.apps", apps)
            .set(
                "webhooks",
                format!(r#"[{{ url = "{url}", secret = "v1" }}]"#),
            )
            .set("webhook_delivery.grace_ms", GRACE_MS)
            .set("webhook_delivery.batch_ms", 20),
    )
}

/// "name channel-or-user [user_id]" of each event, sorted.
fn names(events: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = events
        .iter()
        .map(|e| {
            let what = e["channel"].as_str().or(e["user"].as_str()).unwrap_or("");
            let id = e["user_id"]
                .as_str()
                .map(|u| format!(" {u}"))
                .unwrap_or_default();
            format!("{} {what}{id}", e["name"].as_str().unwrap_or("?"))
        })
        .collect();
    out.sort();
    out
}

/// Waits for the cluster to settle (batch windows, grace) and returns every event so far.
fn settled(receiver: &Receiver) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(GRACE_MS * 3));
    names(&receiver.events())
}

#[test]
fn occupancy_is_decided_once_for_the_cluster() {
    let redis = RedisServer::start();
    let receiver = Receiver::start();
    let (a, b) = (node(&redis, &receiver), node(&redis, &receiver));
    let (mut on_a, _) = connect(&a, "k1");
    subscribe(&mut on_a, "news", None);
    let (mut on_b, _) = connect(&b, "k1");
    subscribe(&mut on_b, "news", None);
    assert_eq!(settled(&receiver), ["channel_occupied news"]);
    // A's subscriber leaves: B still holds it. B's leaves, and one comes back on A within the grace.
    on_a.close();
    on_b.close();
    let (mut again, _) = connect(&a, "k1");
    subscribe(&mut again, "news", None);
    assert_eq!(settled(&receiver), ["channel_occupied news"]);
    // The last one leaves for good: vacated, once.
    again.close();
    assert_eq!(
        settled(&receiver),
        ["channel_occupied news", "channel_vacated news"]
    );
}

#[test]
fn v1_users_come_online_and_go_offline_once_even_through_a_sigkill() {
    let redis = RedisServer::start();
    let receiver = Receiver::start();
    let a = node(&redis, &receiver);
    let mut b = node(&redis, &receiver);
    let on_a = a.identified("alice");
    let _on_b = b.identified("alice");
    assert_eq!(settled(&receiver), ["user_online alice"]);
    on_a.close();
    assert_eq!(
        settled(&receiver),
        ["user_online alice"],
        "alice is still on B"
    );
    // B dies with alice's last connection: the survivor takes her offline, once.
    b.sigkill();
    let events = receiver.wait_events(2, Duration::from_secs(10));
    assert_eq!(names(&events), ["user_offline alice", "user_online alice"]);
    assert_eq!(settled(&receiver).len(), 2);
}

#[test]
fn a_killed_node_s_channels_and_members_are_vacated_and_removed() {
    let redis = RedisServer::start();
    let receiver = Receiver::start();
    let a = node(&redis, &receiver);
    let mut b = node(&redis, &receiver);
    let (mut c, id) = connect(&b, "k1");
    let cd = json!({"user_id": "ghost"}).to_string();
    let auth = channel_auth("k1", "s1", &id, "presence-room", Some(&cd));
    let ok = subscribe_with(&mut c, "presence-room", Some(&auth), Some(&cd));
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        settled(&receiver),
        [
            "channel_occupied presence-room",
            "member_added presence-room ghost"
        ]
    );
    b.sigkill();
    let events = receiver.wait_events(4, Duration::from_secs(10));
    assert_eq!(
        names(&events),
        [
            "channel_occupied presence-room",
            "channel_vacated presence-room",
            "member_added presence-room ghost",
            "member_removed presence-room ghost",
        ]
    );
    assert_eq!(settled(&receiver).len(), 4);
    drop(a);
}
