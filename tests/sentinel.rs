//! Redis Sentinel, for real: a master, a replica and three sentinels (tests/common/sentinel.rs), two
//! gateway nodes on `redis+sentinel://`, and direct-message load between them (tests/common/load.rs)
//! while the master fails: SIGKILLed, or switched by `SENTINEL FAILOVER` while it still runs (it goes on
//! taking writes as a master until the sentinels demote it seconds later, so only following the
//! sentinels' announcements keeps the nodes from numbering messages there that the new master lacks).
//! Each test reports how long the sentinels took to promote the replica and the nodes to be back on
//! it, and checks that the nodes write to the new master, that a channel subscription from before the
//! failure still gets publications from the other node, and that no acked message was lost after the
//! clients resumed (no resume reported a gap, every acked message arrived once).

mod common;

use std::time::{Duration, Instant};

use common::load::round;
use common::redis::RedisServer;
use common::sentinel::SentinelGroup;
use common::{Node, NodeOpts};
use gateway::cluster::keys;
use serde_json::json;

/// Bound on the sentinels promoting the replica and both nodes being back on it.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

fn node(group: &SentinelGroup) -> Node {
    Node::start(
        NodeOpts::new()
            .shards(2)
            .cluster(&group.url())
            .set("limits.rate_limit_per_sec", 0),
    )
}

/// Waits until both nodes have reconnected since `before` (their reconnect counts) and are up again;
/// returns how long that took from `since`.
fn wait_back(nodes: [&Node; 2], before: [f64; 2], since: Instant) -> Duration {
    loop {
        let back = nodes.iter().zip(before).all(|(n, b)| {
            n.metric_sum("gateway_redis_reconnects_total", &[]) > b
                && n.metric_sum("gateway_redis_up", &[]) == 1.0
        });
        if back {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < RECOVERY_BOUND,
            "the nodes were not back on the new master within {RECOVERY_BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Identifies `user` on `node` and waits until `server` (a master of the group) has the user's
/// presence from that node.
fn identified_on(group: &SentinelGroup, server: &RedisServer, node: &Node, user: &str) {
    let mut c = node.client();
    let ready = c.identify(user);
    let node_id = ready["node"].as_str().expect("node id").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let holders: Vec<String> = redis::cmd("HKEYS")
            .arg(keys::presence(user))
            .query(&mut group.conn(server))
            .expect("HKEYS on the master");
        if holders.contains(&node_id) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the master on port {} has no presence of {user}: {holders:?}",
            server.port
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the load across a master failure caused by `fail` and checks what the module doc says.
fn fail_over_under_load(
    group: &mut SentinelGroup,
    fault: &str,
    fail: impl FnOnce(&mut SentinelGroup),
) {
    let a = node(group);
    let b = node(group);
    let new_master = group.replica.port;
    let reconnects = |n: &Node| n.metric_sum("gateway_redis_reconnects_total", &[]);
    let before = [reconnects(&a), reconnects(&b)];
    // A channel subscriber on A from before the failure: its subscription must be restored on the
    // new master.
    let mut sub = a.identified("news-sub");
    let ack = sub.request(json!({"op": "subscribe", "id": "s", "channel": "news"}));
    assert_eq!(ack["status"], "subscribed", "{ack}");
    let mut timings = None;
    let r = round(a.ws_addr, b.ws_addr, || {
        let start = Instant::now();
        fail(group);
        let promoted = group.wait_master(new_master, RECOVERY_BOUND);
        let back = wait_back([&a, &b], before, start);
        timings = Some((promoted, back));
        vec![a.ws_addr, b.ws_addr]
    });
    let (promoted, back) = timings.expect("the fault ran");
    r.check_failover();
    for n in [&a, &b] {
        assert!(
            n.metric_sum("gateway_redis_failovers_total", &[]) >= 1.0,
            "the switch was not counted"
        );
    }
    // A publish from B reaches the subscriber on A through the new master.
    let mut publisher = b.identified("news-pub");
    let ack = publisher.request(
        json!({"op": "publish", "id": "p", "channel": "news", "data": {"after": "failover"}}),
    );
    assert_eq!(
        (ack["status"].as_str(), ack["conns"].as_u64()),
        (Some("published"), Some(1)),
        "{ack}"
    );
    let m = sub.recv_json();
    assert_eq!(
        (m["channel"].as_str(), &m["data"]),
        (Some("news"), &json!({"after": "failover"})),
        "{m}"
    );
    // The nodes write to the new master: a user identified now is in its presence hash there.
    identified_on(group, &group.replica, &a, "after-failover");
    eprintln!(
        "SENTINEL {fault}: replica promoted {promoted:?} after the fault, both nodes back on it after {back:?}; {}",
        r.summary()
    );
}

#[test]
fn sigkill_of_the_master_under_load_is_followed_without_losing_an_acked_message() {
    let mut group = SentinelGroup::start();
    fail_over_under_load(&mut group, "master SIGKILLed", |g| g.master.kill());
}

#[test]
fn a_secured_group_is_followed_and_a_wrong_sentinel_password_gets_nothing() {
    let group = SentinelGroup::start_secured(Some("m-secret"), Some("s-secret"));
    // From the attacker's side: the master's password but not the sentinels' finds no master, so
    // the node never reaches Redis and stays unready.
    let intruder = Node::start(
        NodeOpts::new()
            .cluster(&group.url_with(Some("guess")))
            .no_wait_ready(),
    );
    let a = node(&group);
    group.failover();
    group.wait_master(group.replica.port, RECOVERY_BOUND);
    let deadline = Instant::now() + RECOVERY_BOUND;
    while a.metric_sum("gateway_redis_failovers_total", &[]) < 1.0
        || a.metric_sum("gateway_redis_up", &[]) != 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the node did not follow the switch"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It writes to the new master (with the master's password).
    identified_on(&group, &group.replica, &a, "secured");
    let (status, body) = intruder.http_get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(intruder.metric_sum("gateway_redis_up", &[]), 0.0);
}

#[test]
fn sentinels_that_never_answer_are_passed_over() {
    let group = SentinelGroup::start();
    // Two "sentinels" that accept connections (the kernel does, into the backlog) and never answer,
    // listed first: each costs its own timeout, then the real ones are asked.
    let silent: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports: Vec<u16> = silent
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    let a = Node::start(
        NodeOpts::new()
            .shards(2)
            .cluster(&group.url_listing(&ports, None)),
    );
    identified_on(&group, &group.master, &a, "patient");
}

#[test]
fn a_switch_while_the_old_master_runs_is_followed() {
    let mut group = SentinelGroup::start();
    fail_over_under_load(&mut group, "SENTINEL FAILOVER", |g| g.failover());
}
