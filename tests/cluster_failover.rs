//! The failover scenario, automated with a real redis-server and two gateway processes: alice on node A,
//! bob on node B, messages both ways; A dies (SIGKILL, or SIGTERM); alice reconnects to B and the two keep
//! talking; Redis shows alice on B only, and once the TTLs have run nothing of A is left in Redis. With
//! SIGTERM, A's entries are gone as soon as it has exited.

mod common;

use std::{
    thread,
    time::{Duration, Instant},
};

use common::redis::RedisServer;
use common::{Client, Node, NodeOpts};
use gateway::cluster::keys;
use serde_json::{Value, json};

const POLL: Duration = Duration::from_millis(50);
const WAIT: Duration = Duration::from_secs(20);
/// Presence TTL of these nodes: how long a SIGKILLed node's entries may outlive it.
const PRESENCE_TTL_MS: u64 = 3_000;

fn node(redis: &RedisServer) -> Node {
    Node::start(
        NodeOpts::new()
            .shards(2)
            .cluster(&redis.url())
            .set("cluster.presence_ttl_ms", PRESENCE_TTL_MS)
            .set("cluster.presence_refresh_ms", 500),
    )
}

/// Identifies `user` on `node`; returns the client and the node id from the `ready` frame.
fn connect(node: &Node, user: &str) -> (Client, String) {
    let mut c = node.client();
    let ready = c.identify(user);
    let id = ready["node"]
        .as_str()
        .expect("node id in ready")
        .to_string();
    (c, id)
}

/// The nodes in `user`'s presence hash.
fn presence_nodes(redis: &RedisServer, user: &str) -> Vec<String> {
    let mut nodes: Vec<String> = redis::cmd("HKEYS")
        .arg(keys::presence(user))
        .query(&mut redis.conn())
        .unwrap();
    nodes.sort();
    nodes
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(POLL);
    }
}

/// Every key in Redis, with the fields, members or value it holds, as text.
fn redis_dump(redis: &RedisServer) -> Vec<String> {
    let mut conn = redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    keys.into_iter()
        .map(|key| {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
            let content: Vec<String> = match kind.as_str() {
                "hash" => redis::cmd("HGETALL").arg(&key).query(&mut conn).unwrap(),
                "set" => redis::cmd("SMEMBERS").arg(&key).query(&mut conn).unwrap(),
                "string" => vec![redis::cmd("GET").arg(&key).query(&mut conn).unwrap()],
                _ => Vec::new(),
            };
            format!("{key} ({kind}): {}", content.join(" | "))
        })
        .collect()
}

/// Asserts that no key name or content mentions `node`.
fn nothing_of(redis: &RedisServer, node: &str) -> Result<(), String> {
    let dump = redis_dump(redis);
    match dump.iter().find(|line| line.contains(node)) {
        Some(line) => Err(format!("{node} still in Redis: {line}\nall: {dump:#?}")),
        None => Ok(()),
    }
}

/// Sends and asserts the ack says delivered to `conns` connections.
fn send_delivered(from: &mut Client, id: &str, to: &str, data: Value, conns: u64) {
    let ack = from.request(json!({"op": "send", "id": id, "to": to, "data": data}));
    assert_eq!(
        (ack["status"].as_str(), ack["conns"].as_u64()),
        (Some("delivered"), Some(conns)),
        "{id}: {ack}"
    );
}

fn expect_message(c: &mut Client, from: &str, data: Value) {
    assert_eq!(
        c.recv_json(),
        json!({"op": "message", "from": from, "data": data})
    );
}

/// The scenario up to A's death: both users talk across the nodes.
fn before_failure(redis: &RedisServer, a: &Node, b: &Node) -> (Client, Client, String, String) {
    let (mut alice, node_a) = connect(a, "alice");
    let (mut bob, node_b) = connect(b, "bob");
    assert_ne!(node_a, node_b);
    wait_until("alice and bob in Redis", || {
        presence_nodes(redis, "alice") == [node_a.clone()]
            && presence_nodes(redis, "bob") == [node_b.clone()]
    });
    send_delivered(&mut alice, "a1", "bob", json!("hi bob"), 1);
    expect_message(&mut bob, "alice", json!("hi bob"));
    send_delivered(&mut bob, "b1", "alice", json!("hi alice"), 1);
    expect_message(&mut alice, "bob", json!("hi alice"));
    (alice, bob, node_a, node_b)
}

/// After A's death: alice on B, messages both ways.
fn after_failure(b: &Node, bob: &mut Client, node_b: &str) -> Client {
    let (mut alice, node) = connect(b, "alice");
    assert_eq!(node, node_b);
    send_delivered(bob, "b2", "alice", json!("welcome back"), 1);
    expect_message(&mut alice, "bob", json!("welcome back"));
    send_delivered(&mut alice, "a2", "bob", json!("thanks"), 1);
    expect_message(bob, "alice", json!("thanks"));
    alice
}

#[test]
fn sigkill_failover_alice_reconnects_to_b_and_a_expires() {
    let redis = RedisServer::start();
    let mut a = node(&redis);
    let b = node(&redis);
    let (_alice_on_a, mut bob, node_a, node_b) = before_failure(&redis, &a, &b);

    a.sigkill();
    let killed = Instant::now();
    let _alice = after_failure(&b, &mut bob, &node_b);
    // B's write of alice prunes A's field once it is past the TTL; until then it may linger.
    wait_until("alice on B only", || {
        presence_nodes(&redis, "alice") == [node_b.clone()]
    });
    assert_eq!(presence_nodes(&redis, "bob"), [node_b.as_str()]);
    wait_until("nothing of A in Redis", || {
        nothing_of(&redis, &node_a).is_ok()
    });
    assert!(
        killed.elapsed() >= Duration::from_millis(PRESENCE_TTL_MS) - POLL * 4,
        "A's entries went before the TTL: {:?}",
        killed.elapsed()
    );
    // B is still fully there.
    assert!(nothing_of(&redis, &node_b).is_err());
    // And keeps serving both users.
    send_delivered(&mut bob, "b3", "alice", json!("still here"), 1);
}

#[test]
fn sigterm_failover_removes_a_at_once() {
    let redis = RedisServer::start();
    let mut a = node(&redis);
    let b = node(&redis);
    let (mut alice_on_a, mut bob, node_a, node_b) = before_failure(&redis, &a, &b);
    let ack = alice_on_a.request(json!({"op": "subscribe", "id": "s", "channel": "room"}));
    assert_eq!(ack["status"], "subscribed");

    a.sigterm();
    // alice is told to go (1012 from the drain, not a bare TCP close) and A exits cleanly.
    alice_on_a.expect_close(1012);
    let status = a.wait_exit(WAIT);
    assert!(status.success(), "A exited with {status}");
    // A removed its presence, channel members and registry entry before exiting: no TTL to wait for.
    if let Err(e) = nothing_of(&redis, &node_a) {
        panic!("{e}");
    }
    assert!(presence_nodes(&redis, "alice").is_empty());

    let _alice = after_failure(&b, &mut bob, &node_b);
    wait_until("alice on B", || {
        presence_nodes(&redis, "alice") == [node_b.clone()]
    });
}
