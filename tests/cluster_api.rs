//! The HTTP API against a two-node cluster sharing a real redis-server: publish, send, presence and
//! disconnect reach the other node; close sheds this node only; every endpoint refuses a call without the
//! bearer key (401) on both nodes.

mod common;

use std::{
    thread,
    time::{Duration, Instant},
};

use common::redis::RedisServer;
use common::{Client, Incoming, Node, NodeOpts};
use serde_json::{Value, json};

const KEY: &str = "cluster-key";
const WAIT: Duration = Duration::from_secs(15);

fn node(redis: &RedisServer) -> Node {
    Node::start(
        NodeOpts::new()
            .shards(2)
            .cluster(&redis.url())
            .set_str("api.key", KEY),
    )
}

fn api(node: &Node, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = node.api(Some(KEY), method, path, &body);
    assert_eq!(status, 200, "{method} {path}: {answer}");
    answer
}

/// Polls `GET /v1/presence/<user>` on `node` until it reports `conns`.
fn wait_presence(node: &Node, user: &str, conns: u64) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = api(node, "GET", &format!("/v1/presence/{user}"), Value::Null);
        if answer["conns"] == conns {
            return answer;
        }
        assert!(Instant::now() < deadline, "presence of {user}: {answer}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn node_id(c: &mut Client, user: &str) -> String {
    c.identify(user)["node"].as_str().unwrap().to_string()
}

#[test]
fn publish_send_presence_disconnect_and_close_across_two_nodes() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let b = node(&redis);

    // publish through A reaches subscribers on both nodes.
    let mut on_a = a.identified("sub-a");
    let mut on_b = b.identified("sub-b");
    for c in [&mut on_a, &mut on_b] {
        let ack = c.request(json!({"op": "subscribe", "id": "s", "channel": "news"}));
        assert_eq!(ack["status"], "subscribed");
    }
    let answer = api(
        &a,
        "POST",
        "/v1/publish",
        json!({"channel": "news", "data": {"n": 1}}),
    );
    assert_eq!(answer, json!({"status": "published", "conns": 2}));
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(
            c.recv_json(),
            json!({"op": "message", "channel": "news", "data": {"n": 1}})
        );
    }

    // send through A to bob on B.
    let mut bob_b = b.client();
    let node_b = node_id(&mut bob_b, "bob");
    wait_presence(&a, "bob", 1);
    let answer = api(&a, "POST", "/v1/send", json!({"user": "bob", "data": "hi"}));
    assert_eq!(answer, json!({"status": "delivered", "conns": 1}));
    assert_eq!(bob_b.recv_json(), json!({"op": "message", "data": "hi"}));

    // presence through A lists both nodes once bob is on both.
    let mut bob_a = a.client();
    let node_a = node_id(&mut bob_a, "bob");
    let answer = wait_presence(&a, "bob", 2);
    assert_eq!(answer["online"], true, "{answer}");
    let mut nodes = answer["nodes"].as_array().unwrap().clone();
    nodes.sort_by_key(|n| n["node"].as_str().unwrap().to_string());
    let mut want = vec![
        json!({"node": node_a, "conns": 1}),
        json!({"node": node_b, "conns": 1}),
    ];
    want.sort_by_key(|n| n["node"].as_str().unwrap().to_string());
    assert_eq!(nodes, want);
    let answer = api(&b, "GET", "/v1/presence/nobody", Value::Null);
    assert_eq!(
        answer,
        json!({"user": "nobody", "online": false, "conns": 0, "nodes": []})
    );

    // disconnect through A closes bob on both nodes with 4010.
    let answer = api(&a, "POST", "/v1/disconnect", json!({"user": "bob"}));
    assert_eq!(answer, json!({"closed": 2}));
    bob_a.expect_close(4010);
    bob_b.expect_close(4010);
    wait_presence(&b, "bob", 0);

    // close on B sheds B's connections only.
    let mut more_b: Vec<Client> = (0..3).map(|i| b.identified(&format!("b{i}"))).collect();
    let answer = api(&b, "POST", "/v1/close", json!({"count": 10}));
    assert_eq!(answer, json!({"closed": 4}), "sub-b and b0..b2");
    for c in more_b.iter_mut().chain([&mut on_b]) {
        c.send_json(&json!({"op": "ping", "id": "p"}));
        match c.try_recv() {
            Ok(Incoming::Close(code)) => assert_eq!(code, Some(1001)),
            other => panic!("expected 1001, got {other:?}"),
        }
    }
    on_a.ping_pong("a-untouched");
}

#[test]
fn every_endpoint_needs_the_key_on_every_node() {
    let redis = RedisServer::start();
    let nodes = [node(&redis), node(&redis)];
    let calls = [
        ("POST", "/v1/publish", json!({"channel": "c", "data": 1})),
        ("POST", "/v1/send", json!({"user": "u", "data": 1})),
        ("GET", "/v1/presence/u", Value::Null),
        ("POST", "/v1/disconnect", json!({"user": "u"})),
        ("POST", "/v1/close", json!({"count": 1})),
        ("GET", "/v1/nodes", Value::Null),
    ];
    for node in &nodes {
        for (method, path, body) in &calls {
            for key in [None, Some("wrong")] {
                let (status, answer) = node.api(key, method, path, body);
                assert_eq!(status, 401, "{method} {path} with {key:?}: {answer}");
            }
            let (status, answer) = node.api(Some(KEY), method, path, body);
            assert_eq!(status, 200, "{method} {path}: {answer}");
        }
    }
}
