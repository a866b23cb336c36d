//! Cluster mode end to end: real `gateway serve` nodes sharing a real `redis-server` write their users'
//! presence (`presence:<user>`, one field per node) and their registry entry (`gateway:nodes`,
//! `gateway:node:<id>:alive`), clean both up on SIGTERM, let both expire after SIGKILL, and keep serving
//! local traffic while Redis is unreachable (re-asserting presence once it is back).
//!
//! Every node runs with short cluster timings (presence TTL 2 s, refresh 300 ms, heartbeat 200 ms, node
//! TTL 1 s) and the tests inspect Redis directly with a blocking connection. Every wait polls with a bound;
//! none relies on a sleep.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::redis::{RedisServer, free_port};
use common::{Client, Node, NodeOpts};
use gateway::cluster::{keys, now_ms, presence};
use serde_json::{Value, json};

/// `cluster.presence_ttl_ms` of every node here.
const PRESENCE_TTL_MS: u64 = 2_000;
/// `cluster.presence_refresh_ms`.
const PRESENCE_REFRESH_MS: u64 = 300;
/// `cluster.heartbeat_interval_ms`.
const HEARTBEAT_MS: u64 = 200;
/// `cluster.node_ttl_ms`.
const NODE_TTL_MS: u64 = 1_000;
/// Slack added to a TTL or interval before a wait gives up (slow CI machines, batching, scheduling).
const MARGIN: Duration = Duration::from_secs(3);
/// Bound for a presence change to reach Redis (the node batches for about 100 ms).
const CHANGE_WAIT: Duration = Duration::from_secs(5);
/// Bound for a node to notice that Redis is reachable again and re-assert its state.
const RECONNECT_WAIT: Duration = Duration::from_secs(15);
/// Interval between two polls.
const POLL: Duration = Duration::from_millis(20);
/// Bound for a node to exit after SIGTERM.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// A node configuration in cluster mode with the short timings above.
fn cluster_opts(redis_url: &str) -> NodeOpts {
    NodeOpts::new()
        .set_str("redis_url", redis_url)
        .set("cluster.presence_ttl_ms", PRESENCE_TTL_MS)
        .set("cluster.presence_refresh_ms", PRESENCE_REFRESH_MS)
        .set("cluster.heartbeat_interval_ms", HEARTBEAT_MS)
        .set("cluster.node_ttl_ms", NODE_TTL_MS)
}

/// `redis://127.0.0.1:<port>`, the form of the contract.
fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// Calls `check` every [`POLL`] until it answers `Ok`, and returns that value; panics at `deadline` with
/// `what` and the last `Err` (a description of what was seen instead).
fn eventually_by<T>(
    what: &str,
    deadline: Instant,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not within {:?}; last seen: {last}",
                deadline.saturating_duration_since(start)
            ),
        }
        thread::sleep(POLL);
    }
}

/// [`eventually_by`] with a deadline `timeout` from now.
fn eventually<T>(what: &str, timeout: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    eventually_by(what, Instant::now() + timeout, check)
}

/// `HGETALL key` on a fresh connection (so that a Redis restart never leaves the test a dead socket).
fn hgetall(redis: &RedisServer, key: &str) -> BTreeMap<String, String> {
    redis::cmd("HGETALL")
        .arg(key)
        .query(&mut redis.conn())
        .unwrap_or_else(|e| panic!("HGETALL {key}: {e}"))
}

fn exists(redis: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(&mut redis.conn())
        .unwrap_or_else(|e| panic!("EXISTS {key}: {e}"))
        == 1
}

fn pttl(redis: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query(&mut redis.conn())
        .unwrap_or_else(|e| panic!("PTTL {key}: {e}"))
}

/// The fields of `presence:<user>`.
fn presence_hash(redis: &RedisServer, user: &str) -> BTreeMap<String, String> {
    hgetall(redis, &keys::presence(user))
}

/// `(count, ts_ms)` of `node`'s field in `presence:<user>`; panics on a malformed value.
fn presence_of(redis: &RedisServer, user: &str, node: &str) -> Option<(u32, u64)> {
    let fields = presence_hash(redis, user);
    fields.get(node).map(|v| {
        presence::parse_value(v).unwrap_or_else(|| {
            panic!(
                "presence:{user} field {node} is not \"<count>:<ts_ms>\": {v:?} (all: {fields:?})"
            )
        })
    })
}

/// Waits until `node`'s field of `presence:<user>` holds `count`; returns its timestamp.
fn wait_count(redis: &RedisServer, user: &str, node: &Node, count: u32, timeout: Duration) -> u64 {
    eventually(
        &format!("presence:{user} field {} = {count}", node.node_id),
        timeout,
        || match presence_of(redis, user, &node.node_id) {
            Some((c, ts)) if c == count => Ok(ts),
            _ => Err(format!("{:?}", presence_hash(redis, user))),
        },
    )
}

/// `GET /v1/nodes` on `node`: (status, JSON body).
fn v1_nodes(node: &Node) -> (u16, Value) {
    let (status, text) = node.http_get("/v1/nodes");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("GET /v1/nodes: body is not JSON ({e}): {text:?}"));
    (status, body)
}

/// The entries of a `/v1/nodes` answer by id, after checking the shape of each.
fn node_entries(body: &Value) -> BTreeMap<String, Value> {
    let list = body["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("/v1/nodes: no \"nodes\" array: {body}"));
    list.iter()
        .map(|n| {
            let id = n["id"]
                .as_str()
                .unwrap_or_else(|| panic!("/v1/nodes entry without a string id: {n}"));
            assert!(
                matches!(n["state"].as_str(), Some("alive" | "draining" | "dead")),
                "/v1/nodes entry {id}: state must be alive|draining|dead: {n}"
            );
            for k in ["ws", "admin"] {
                assert!(
                    n[k].is_string(),
                    "/v1/nodes entry {id}: {k} not a string: {n}"
                );
            }
            for k in ["started_ms", "heartbeat_ms"] {
                assert!(
                    n[k].is_u64(),
                    "/v1/nodes entry {id}: {k} not an integer: {n}"
                );
            }
            (id.to_string(), n.clone())
        })
        .collect()
}

/// Waits until `GET /v1/nodes` on `on` answers 200 with `id` in `state` (`None`: `id` absent); returns
/// the entries.
fn wait_node_state(
    on: &Node,
    id: &str,
    state: Option<&str>,
    deadline: Instant,
) -> BTreeMap<String, Value> {
    eventually_by(
        &format!("/v1/nodes on {} shows {id} as {state:?}", on.node_id),
        deadline,
        || {
            let (status, body) = v1_nodes(on);
            if status != 200 {
                return Err(format!("status {status}: {body}"));
            }
            let entries = node_entries(&body);
            let got = entries.get(id).map(|n| n["state"].as_str().unwrap_or(""));
            if got == state {
                Ok(entries)
            } else {
                Err(body.to_string())
            }
        },
    )
}

/// Asserts that a `/v1/nodes` entry describes `node` (its ports; the host part may be an advertised one).
fn assert_describes(entry: &Value, node: &Node) {
    let port_of = |k: &str| {
        let text = entry[k].as_str().unwrap_or("");
        text.parse::<SocketAddr>()
            .unwrap_or_else(|e| panic!("{k} of {} is not ip:port ({e}): {entry}", node.node_id))
            .port()
    };
    assert_eq!(
        port_of("ws"),
        node.ws_addr.port(),
        "ws of {}: {entry}",
        node.node_id
    );
    assert_eq!(
        port_of("admin"),
        node.admin_addr.port(),
        "admin of {}: {entry}",
        node.node_id
    );
    let started = entry["started_ms"].as_u64().unwrap_or(0);
    let heartbeat = entry["heartbeat_ms"].as_u64().unwrap_or(0);
    assert!(started > 0 && started <= now_ms(), "started_ms: {entry}");
    assert!(
        heartbeat >= started && heartbeat <= now_ms() + 1_000,
        "heartbeat_ms: {entry}"
    );
}

/// Every sample of the metric `name` in `/metrics` (labels ignored); empty when the metric is missing.
fn samples(node: &Node, name: &str) -> Vec<f64> {
    node.metrics()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let series_end = l.find(['{', ' ']).unwrap_or(l.len());
            if &l[..series_end] != name {
                return None;
            }
            let rest = match l.rfind('}') {
                Some(i) => &l[i + 1..],
                None => &l[series_end..],
            };
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// Waits until `gateway_redis_up` exists and every sample of it equals `up`.
fn wait_redis_up(node: &Node, up: f64, timeout: Duration) {
    eventually(&format!("gateway_redis_up = {up}"), timeout, || {
        let s = samples(node, "gateway_redis_up");
        if !s.is_empty() && s.iter().all(|v| *v == up) {
            Ok(())
        } else {
            Err(format!("samples {s:?}"))
        }
    });
}

/// `alice` sends to `bob` on the same node: delivered to bob's one connection.
fn assert_local_send(alice: &mut Client, bob: &mut Client, id: &str) {
    let ack = alice.request(json!({"op": "send", "id": id, "to": "bob", "data": {"n": id}}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": id, "status": "delivered", "conns": 1}),
        "local send {id}"
    );
    assert_eq!(
        bob.recv_json(),
        json!({"op": "message", "from": "alice", "data": {"n": id}})
    );
}

#[test]
fn presence_follows_connections_on_one_node() {
    let redis = RedisServer::start();
    let node = Node::start(cluster_opts(&redis.url()).shards(2));
    let started = now_ms();
    let me = node.node_id.as_str();

    let c1 = node.identified("alice");
    let c2 = node.identified("alice");
    let ts = wait_count(&redis, "alice", &node, 2, CHANGE_WAIT);
    assert!(
        ts + 1_000 >= started && ts <= now_ms() + 1_000,
        "timestamp {ts} is not the wall clock in ms (test started at {started})"
    );
    assert_eq!(
        presence_hash(&redis, "alice").len(),
        1,
        "only this node's field"
    );
    let ttl = pttl(&redis, &keys::presence("alice"));
    assert!(
        ttl > 0 && ttl <= PRESENCE_TTL_MS as i64,
        "PTTL of presence:alice: {ttl}"
    );

    // The periodic refresh re-stamps the field (same count) well within the TTL.
    eventually(
        "presence:alice refreshed with a newer timestamp",
        Duration::from_millis(PRESENCE_REFRESH_MS) + MARGIN,
        || match presence_of(&redis, "alice", me) {
            Some((2, t)) if t > ts => Ok(()),
            other => Err(format!("{other:?} (first write at {ts})")),
        },
    );

    c1.close();
    wait_count(&redis, "alice", &node, 1, CHANGE_WAIT);
    c2.close();
    eventually("presence:alice gone", CHANGE_WAIT, || {
        if exists(&redis, &keys::presence("alice")) {
            Err(format!("{:?}", presence_hash(&redis, "alice")))
        } else {
            Ok(())
        }
    });

    // A user on another shard of the same node is counted the same way.
    let clients: Vec<Client> = (0..3).map(|_| node.identified("bob")).collect();
    wait_count(&redis, "bob", &node, 3, CHANGE_WAIT);
    drop(clients);
    eventually("presence:bob gone after the TCP drops", CHANGE_WAIT, || {
        if exists(&redis, &keys::presence("bob")) {
            Err(format!("{:?}", presence_hash(&redis, "bob")))
        } else {
            Ok(())
        }
    });
}

#[test]
fn v1_nodes_is_503_without_redis() {
    let node = Node::start(NodeOpts::new());
    let (status, body) = v1_nodes(&node);
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string(), "503 body needs an error: {body}");
}

#[test]
fn two_nodes_then_sigterm_removes_presence_and_registry_entry() {
    let redis = RedisServer::start();
    // A long close grace: carol's client holds a's shutdown open (draining) until the test reads its Close.
    let mut a = Node::start(cluster_opts(&redis.url()).set("shutdown.close_grace_ms", 30_000));
    let b = Node::start(cluster_opts(&redis.url()));
    let (ida, idb) = (a.node_id.clone(), b.node_id.clone());

    let mut alice_a = a.identified("alice");
    let _alice_b = b.identified("alice");
    let mut carol_a = a.identified("carol");
    wait_count(&redis, "alice", &a, 1, CHANGE_WAIT);
    wait_count(&redis, "alice", &b, 1, CHANGE_WAIT);
    wait_count(&redis, "carol", &a, 1, CHANGE_WAIT);
    assert_eq!(
        presence_hash(&redis, "alice").len(),
        2,
        "{:?}",
        presence_hash(&redis, "alice")
    );

    let deadline = Instant::now() + MARGIN;
    wait_node_state(&b, &ida, Some("alive"), deadline);
    let entries = wait_node_state(&b, &idb, Some("alive"), deadline);
    assert_describes(&entries[&ida], &a);
    assert_describes(&entries[&idb], &b);
    let on_a = wait_node_state(&a, &idb, Some("alive"), deadline);
    assert_eq!(
        on_a.keys().collect::<Vec<_>>(),
        entries.keys().collect::<Vec<_>>()
    );
    assert!(exists(&redis, &keys::node_alive(&ida)));

    a.sigterm();
    alice_a.expect_close(1012);
    // While carol's close is unanswered, a drains and says so.
    wait_node_state(
        &b,
        &ida,
        Some("draining"),
        Instant::now() + Duration::from_millis(HEARTBEAT_MS) + MARGIN,
    );
    carol_a.expect_close(1012);
    let status = a.wait_exit(EXIT_WAIT);
    assert!(status.success(), "node a after SIGTERM: {status}");

    // Right after the exit, before any TTL could have run out.
    let alice = presence_hash(&redis, "alice");
    assert!(
        !alice.contains_key(&ida),
        "a's field survived SIGTERM: {alice:?}"
    );
    assert!(alice.contains_key(&idb), "b's field must stay: {alice:?}");
    assert!(
        !exists(&redis, &keys::presence("carol")),
        "carol (only on a) survived SIGTERM: {:?}",
        presence_hash(&redis, "carol")
    );
    let registry = hgetall(&redis, keys::NODES);
    assert!(
        !registry.contains_key(&ida),
        "a still in gateway:nodes: {registry:?}"
    );
    assert!(
        registry.contains_key(&idb),
        "b must stay in gateway:nodes: {registry:?}"
    );
    assert!(
        !exists(&redis, &keys::node_alive(&ida)),
        "a's alive key survived SIGTERM"
    );
    // b serves /v1/nodes from the list it reads at each heartbeat: a leaves it by the next one.
    let entries = wait_node_state(
        &b,
        &ida,
        None,
        Instant::now() + Duration::from_millis(HEARTBEAT_MS) + MARGIN,
    );
    assert_eq!(entries[&idb]["state"], "alive");
}

#[test]
fn sigkilled_node_expires_from_presence_and_turns_dead() {
    let redis = RedisServer::start();
    let b = Node::start(cluster_opts(&redis.url()));
    let mut c = Node::start(cluster_opts(&redis.url()));
    let idc = c.node_id.clone();

    let _alice_b = b.identified("alice");
    let _alice_c = c.identified("alice");
    let _carol_c = c.identified("carol");
    wait_count(&redis, "alice", &b, 1, CHANGE_WAIT);
    wait_count(&redis, "alice", &c, 1, CHANGE_WAIT);
    wait_count(&redis, "carol", &c, 1, CHANGE_WAIT);
    wait_node_state(&b, &idc, Some("alive"), Instant::now() + MARGIN);

    // The newest timestamp c can have written before it dies is at least this one.
    let (_, last_ts) = presence_of(&redis, "alice", &idc).expect("c's field");
    let status = c.sigkill();
    assert!(
        !status.success(),
        "SIGKILL must not look like a clean exit: {status}"
    );
    let killed = Instant::now();

    // Alive key gone after node_ttl: dead, its description kept.
    let entries = wait_node_state(
        &b,
        &idc,
        Some("dead"),
        killed + Duration::from_millis(NODE_TTL_MS) + MARGIN,
    );
    assert_describes(&entries[&idc], &c);
    assert_eq!(entries[&b.node_id]["state"], "alive");
    assert!(!exists(&redis, &keys::node_alive(&idc)));

    // Presence: pruned from alice's hash (b keeps refreshing it), and carol's key expires whole.
    let presence_deadline = killed + Duration::from_millis(PRESENCE_TTL_MS) + MARGIN;
    eventually_by(
        "c's field pruned from presence:alice",
        presence_deadline,
        || {
            let fields = presence_hash(&redis, "alice");
            if fields.contains_key(&idc) {
                Err(format!("{fields:?}"))
            } else {
                Ok(())
            }
        },
    );
    let gone_at = now_ms();
    assert!(
        gone_at + 50 >= last_ts + PRESENCE_TTL_MS,
        "c's field went {} ms after its last write, before the presence TTL",
        gone_at.saturating_sub(last_ts)
    );
    assert!(
        presence_of(&redis, "alice", &b.node_id).is_some(),
        "b's field must stay: {:?}",
        presence_hash(&redis, "alice")
    );
    eventually_by("presence:carol expired", presence_deadline, || {
        if exists(&redis, &keys::presence("carol")) {
            Err(format!("{:?}", presence_hash(&redis, "carol")))
        } else {
            Ok(())
        }
    });
}

#[test]
fn redis_down_at_start_then_up() {
    let port = free_port();
    let node = Node::start(cluster_opts(&url(port)).no_wait_ready());
    let me = node.node_id.clone();

    // Not ready before the first Redis session (the start-up gate), yet serving local traffic: a
    // client that comes anyway is told the cluster is degraded.
    let mut alice = node.client();
    let ready = alice.request(json!({"op": "identify", "id": "i", "user": "alice"}));
    assert_eq!(
        (ready["op"].as_str(), ready["cluster"].as_str()),
        (Some("ready"), Some("degraded")),
        "{ready}"
    );
    let mut bob = node.identified("bob");
    assert_local_send(&mut alice, &mut bob, "m1");
    wait_redis_up(&node, 0.0, CHANGE_WAIT);
    let (status, body) = node.http_get("/readyz");
    assert_eq!(
        (status, body.as_str()),
        (503, "waiting for the first redis session\n"),
        "/readyz before the node ever reached Redis"
    );

    let mut redis = RedisServer::start_on(port);
    wait_redis_up(&node, 1.0, RECONNECT_WAIT);
    // The users connected while Redis was down are asserted once it is up.
    wait_count(&redis, "alice", &node, 1, RECONNECT_WAIT);
    wait_count(&redis, "bob", &node, 1, RECONNECT_WAIT);
    wait_node_state(&node, &me, Some("alive"), Instant::now() + RECONNECT_WAIT);
    eventually(
        "/readyz 200 once Redis was reached",
        CHANGE_WAIT,
        || match node.http_get("/readyz") {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        },
    );
    // And changes flow again.
    let _carol = node.identified("carol");
    wait_count(&redis, "carol", &node, 1, CHANGE_WAIT);
    assert_local_send(&mut alice, &mut bob, "m2");

    // Redis gone again: still ready, still serving, reported as down.
    redis.kill();
    wait_redis_up(&node, 0.0, RECONNECT_WAIT);
    let (status, body) = node.http_get("/readyz");
    assert_eq!(
        status, 200,
        "/readyz after Redis died, not required: {body}"
    );
    assert_local_send(&mut alice, &mut bob, "m3");
}

#[test]
fn require_redis_for_ready_gates_readyz() {
    let port = free_port();
    let node = Node::start(
        cluster_opts(&url(port))
            .set("cluster.require_redis_for_ready", true)
            .no_wait_ready(),
    );

    let readyz = || node.try_http_get("/readyz").map_err(|e| e.to_string());
    let (status, body) = eventually("/readyz answers", CHANGE_WAIT, readyz);
    assert_eq!(status, 503, "/readyz with Redis down and required: {body}");
    assert!(!body.trim().is_empty(), "503 without a reason");
    wait_redis_up(&node, 0.0, CHANGE_WAIT);
    // It stays unready across several heartbeat intervals (an observation window, not a wait).
    let window = Instant::now() + Duration::from_millis(5 * HEARTBEAT_MS);
    while Instant::now() < window {
        let (status, body) = node.http_get("/readyz");
        assert_eq!(
            status, 503,
            "/readyz turned {status} with Redis still down: {body}"
        );
        thread::sleep(POLL);
    }
    // Local traffic is served anyway (a load balancer decides; the node does not refuse).
    let mut alice = node.identified("alice");
    let mut bob = node.identified("bob");
    assert_local_send(&mut alice, &mut bob, "m1");

    let mut redis = RedisServer::start_on(port);
    eventually(
        "/readyz 200 once Redis is up",
        RECONNECT_WAIT,
        || match readyz()? {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    wait_redis_up(&node, 1.0, RECONNECT_WAIT);
    wait_count(&redis, "alice", &node, 1, RECONNECT_WAIT);

    redis.kill();
    eventually(
        "/readyz 503 once Redis is down again",
        RECONNECT_WAIT,
        || match readyz()? {
            (503, _) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    wait_redis_up(&node, 0.0, CHANGE_WAIT);
    redis.restart_empty();
    eventually(
        "/readyz 200 after the restart",
        RECONNECT_WAIT,
        || match readyz()? {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn presence_and_registry_come_back_after_redis_restarts_empty() {
    let mut redis = RedisServer::start();
    let node = Node::start(cluster_opts(&redis.url()));
    let me = node.node_id.clone();
    let mut alice = node.identified("alice");
    let _alice2 = node.identified("alice");
    let mut bob = node.identified("bob");
    wait_count(&redis, "alice", &node, 2, CHANGE_WAIT);
    wait_count(&redis, "bob", &node, 1, CHANGE_WAIT);
    wait_node_state(&node, &me, Some("alive"), Instant::now() + MARGIN);

    redis.restart_empty();

    wait_count(&redis, "alice", &node, 2, RECONNECT_WAIT);
    wait_count(&redis, "bob", &node, 1, RECONNECT_WAIT);
    wait_node_state(&node, &me, Some("alive"), Instant::now() + RECONNECT_WAIT);
    wait_redis_up(&node, 1.0, CHANGE_WAIT);
    let (status, body) = node.http_get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert_local_send(&mut alice, &mut bob, "after-restart");
}
