//! Pusher across nodes on one real redis-server: presence members are decided cluster-wide (one
//! `member_added` for a member's first socket anywhere, one `member_removed` after its last), the
//! member list spans the nodes, and a SIGKILLed node's members are removed by the survivors (no ghost
//! members). Triggers, client events and sendToUser cross nodes.

mod common;

use std::time::Duration;

use common::pusher::{api, connect, data, subscribe, subscribe_with};
use common::redis::RedisServer;
use common::{Client, Node, NodeOpts};
use serde_json::{Value, json};
use shards::pusher::signature::channel_auth;

const APP: (&str, &str, &str) = ("1", "k1", "s1");

fn node(redis: &RedisServer) -> Node {
    Node::start(
        NodeOpts::new()
            .shards(2)
            .cluster(&redis.url())
            .env("GATEWAY_PUSHER_APPS", "1:k1:s1"),
    )
}

/// Joins `channel` as `user_id`; returns the member ids `subscription_succeeded` lists, sorted.
fn join(c: &mut Client, socket_id: &str, channel: &str, user_id: &str) -> Vec<String> {
    let cd = json!({"user_id": user_id, "user_info": {"name": user_id}}).to_string();
    let auth = channel_auth("k1", "s1", socket_id, channel, Some(&cd));
    let ok = subscribe_with(c, channel, Some(&auth), Some(&cd));
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    let presence = data(&ok)["presence"].clone();
    let mut ids: Vec<String> = serde_json::from_value(presence["ids"].clone()).unwrap();
    ids.sort();
    assert_eq!(
        presence["count"].as_u64(),
        Some(ids.len() as u64),
        "{presence}"
    );
    ids
}

/// The next frame, which must be `event`; returns its decoded data.
fn expect(c: &mut Client, event: &str) -> Value {
    let f = c.recv_json();
    assert_eq!(f["event"], event, "{f}");
    data(&f)
}

/// Asserts nothing but the pong to a ping is pending on `c` (after letting the cluster settle).
fn nothing_pending(c: &mut Client) {
    std::thread::sleep(Duration::from_millis(300));
    c.send_json(&json!({"event": "pusher:ping"}));
    let f = c.recv_json();
    assert_eq!(f["event"], "pusher:pong", "unexpected frame {f}");
}

#[test]
fn presence_members_are_decided_once_across_nodes() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis), node(&redis));
    let (mut obs, obs_id) = connect(&a, "k1");
    assert_eq!(join(&mut obs, &obs_id, "presence-room", "obs"), ["obs"]);
    // Ann on B: the observer on A hears of her, and she sees the observer.
    let (mut on_b, id_b) = connect(&b, "k1");
    assert_eq!(
        join(&mut on_b, &id_b, "presence-room", "ann"),
        ["ann", "obs"]
    );
    let added = expect(&mut obs, "pusher_internal:member_added");
    assert_eq!(
        added,
        json!({"user_id": "ann", "user_info": {"name": "ann"}})
    );
    // Ann's second socket, on A: no second member_added anywhere.
    let (mut on_a, id_a) = connect(&a, "k1");
    assert_eq!(
        join(&mut on_a, &id_a, "presence-room", "ann"),
        ["ann", "obs"]
    );
    nothing_pending(&mut obs);
    // Her socket on B leaves: she is still there (on A). Her last one leaves: one member_removed.
    on_b.close();
    nothing_pending(&mut obs);
    on_a.close();
    assert_eq!(
        expect(&mut obs, "pusher_internal:member_removed"),
        json!({"user_id": "ann"})
    );
    nothing_pending(&mut obs);
}

#[test]
fn a_killed_node_s_members_are_removed_by_the_survivors() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let mut b = node(&redis);
    let (mut obs, obs_id) = connect(&a, "k1");
    join(&mut obs, &obs_id, "presence-room", "obs");
    let (mut ghost, ghost_id) = connect(&b, "k1");
    join(&mut ghost, &ghost_id, "presence-room", "ghost");
    expect(&mut obs, "pusher_internal:member_added");
    b.sigkill();
    // The registry declares B dead 1 s after its last heartbeat; A's sweep removes the member.
    obs.set_read_timeout(Duration::from_secs(10));
    assert_eq!(
        expect(&mut obs, "pusher_internal:member_removed"),
        json!({"user_id": "ghost"})
    );
    nothing_pending(&mut obs);
    // And a newcomer's member list no longer has the ghost.
    let (mut late, late_id) = connect(&a, "k1");
    assert_eq!(
        join(&mut late, &late_id, "presence-room", "late"),
        ["late", "obs"]
    );
}

#[test]
fn triggers_client_events_and_user_events_cross_nodes() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, id_a) = connect(&a, "k1");
    let (mut on_b, id_b) = connect(&b, "k1");
    for (c, id) in [(&mut on_a, &id_a), (&mut on_b, &id_b)] {
        subscribe(c, "news", None);
        subscribe(
            c,
            "private-chat",
            Some(&channel_auth("k1", "s1", id, "private-chat", None)),
        );
    }
    // A trigger on A's HTTP API reaches B's subscriber (and A's).
    let body = json!({"name": "e", "channel": "news", "data": "hi"}).to_string();
    assert_eq!(api(&a, APP, "POST", "/events", &body).0, 200);
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(c.recv_json()["data"], "hi");
    }
    // socket_id exclusion across nodes: B's socket is skipped by a trigger made on A.
    let body =
        json!({"name": "e", "channel": "news", "data": "not b", "socket_id": id_b}).to_string();
    assert_eq!(api(&a, APP, "POST", "/events", &body).0, 200);
    assert_eq!(on_a.recv_json()["data"], "not b");
    nothing_pending(&mut on_b);
    // A client event from B reaches A, not B.
    on_b.send_json(&json!({"event": "client-x", "channel": "private-chat", "data": {"n": 1}}));
    assert_eq!(on_a.recv_json()["data"], json!({"n": 1}));
    nothing_pending(&mut on_b); // Signed in on B, sent to from A right after signin_success: delivered (the success waits for
    // the user's presence in Redis, as a v1 `ready` does).
    for round in 0..20 {
        let user_data = json!({"id": format!("u{round}")}).to_string();
        let (mut c, id) = connect(&b, "k1");
        let auth = shards::pusher::signature::user_auth("k1", "s1", &id, &user_data);
        c.send_json(
            &json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        );
        assert_eq!(c.recv_json()["event"], "pusher:signin_success");
        let body =
            json!({"name": "hi", "channel": format!("#server-to-user-u{round}"), "data": "x"});
        assert_eq!(api(&a, APP, "POST", "/events", &body.to_string()).0, 200);
        assert_eq!(c.recv_json()["event"], "hi", "round {round}");
    }
    // terminate_connections on A closes the user's sockets on B (4009) and on A.
    let user_data = json!({"id": "leaver"}).to_string();
    let mut sockets = Vec::new();
    for n in [&a, &b, &b] {
        let (mut c, id) = connect(n, "k1");
        let auth = shards::pusher::signature::user_auth("k1", "s1", &id, &user_data);
        c.send_json(
            &json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        );
        assert_eq!(c.recv_json()["event"], "pusher:signin_success");
        sockets.push(c);
    }
    let (status, _) = api(&a, APP, "POST", "/users/leaver/terminate_connections", "");
    assert_eq!(status, 200);
    for c in &mut sockets {
        c.expect_close(4009);
    }
    nothing_pending(&mut on_b);
}

#[test]
fn channel_queries_span_the_nodes() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, id_a) = connect(&a, "k1");
    let (mut on_b, id_b) = connect(&b, "k1");
    join(&mut on_a, &id_a, "presence-room", "ann");
    join(&mut on_b, &id_b, "presence-room", "bob");
    expect(&mut on_a, "pusher_internal:member_added");
    subscribe(&mut on_b, "only-on-b", None);
    subscribe(&mut on_a, "news", None);
    subscribe(&mut on_b, "news", None);
    // Counts reach Redis within a batch window.
    std::thread::sleep(Duration::from_millis(300));
    let (_, v) = api(&a, APP, "GET", "/channels", "");
    assert_eq!(
        v,
        json!({"channels": {"news": {}, "only-on-b": {}, "presence-room": {}}})
    );
    let (_, v) = api(
        &a,
        APP,
        "GET",
        "/channels?filter_by_prefix=presence-&info=user_count",
        "",
    );
    assert_eq!(v, json!({"channels": {"presence-room": {"user_count": 2}}}));
    eventually(
        &a,
        "/channels/news?info=subscription_count",
        json!({"occupied": true, "subscription_count": 2}),
    );
    let (_, v) = api(&b, APP, "GET", "/channels/presence-room/users", "");
    assert_eq!(v, json!({"users": [{"id": "ann"}, {"id": "bob"}]}));
    let body = json!({"name": "e", "channels": ["news", "presence-room"], "data": "x",
        "info": "subscription_count,user_count"});
    let (_, v) = api(&a, APP, "POST", "/events", &body.to_string());
    assert_eq!(
        v,
        json!({"channels": {
            "news": {"subscription_count": 2},
            "presence-room": {"subscription_count": 2, "user_count": 2}
        }})
    );
    // B leaves everything: A's answers follow.
    on_b.close();
    eventually(
        &a,
        "/channels/news?info=subscription_count",
        json!({"occupied": true, "subscription_count": 1}),
    );
    eventually(&a, "/channels/only-on-b", json!({"occupied": false}));
}

/// Asks `path` of `node`'s API until it answers `want` (the cluster settles within batch windows).
fn eventually(node: &Node, path: &str, want: Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = api(node, APP, "GET", path, "");
        if v == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path}: {v}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn presence_members_and_their_info_survive_a_redis_restart() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis), node(&redis));
    let (mut ann, ann_id) = connect(&b, "k1");
    join(&mut ann, &ann_id, "presence-room", "ann");
    redis.restart_empty();
    // Once B has re-asserted its state, a newcomer on A sees Ann with her info, not a bare member.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (mut late, late_id) = connect(&a, "k1");
        let cd = json!({"user_id": "late"}).to_string();
        let auth = channel_auth("k1", "s1", &late_id, "presence-room", Some(&cd));
        let ok = subscribe_with(&mut late, "presence-room", Some(&auth), Some(&cd));
        let hash = data(&ok)["presence"]["hash"].clone();
        if hash["ann"] == json!({"name": "ann"}) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Ann's info after the restart: {hash}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
