//! Redis Cluster, for real: three masters and three replicas (tests/common/redis_cluster.rs), gateway
//! nodes on `redis+cluster://`, and the cross-node scenarios the single-Redis tests run
//! (tests/common/scenarios.rs): direct messages both ways, fan-out to 300 subscribers over three
//! nodes, channel and user presence, history and resume across nodes, one order from senders on two
//! nodes, a killed node's members swept and its user reached on another node, on a cluster with a
//! password (a node given a wrong one stays unready). Then a master fails under direct-message load
//! (tests/common/load.rs), promoted away by `CLUSTER FAILOVER` on its replica and, separately,
//! SIGKILLed: no acked message may be lost after the clients resume, and the time until the nodes
//! deliver across again is reported. A resharding under the same load (every slot of a master moved
//! with its keys) is there too, ignored until the faults it shows are fixed.

mod common;

use std::time::{Duration, Instant};

use common::load::round;
use common::redis_cluster::RedisCluster;
use common::scenarios::{self, KEPT, channel_presence, eventually, publish, subscribe};
use common::{Node, NodeOpts};
use gateway::cluster::keys;
use serde_json::json;

/// Bound on a master's replica taking over, and then on the nodes delivering across again.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

fn node(cluster: &RedisCluster) -> Node {
    Node::start(
        NodeOpts::new()
            .shards(2)
            .cluster(&cluster.url())
            .set("history.max_messages", KEPT)
            .set("limits.rate_limit_per_sec", 0),
    )
}

/// How many nodes hold `user` in its presence hash (`presence:{<user>}` on its slot's master).
fn presence_nodes(cluster: &RedisCluster, user: &str) -> usize {
    redis::cmd("HLEN")
        .arg(keys::presence(user))
        .query(&mut cluster.conn())
        .unwrap_or(0)
}

#[test]
fn the_cross_node_scenarios_run_on_a_redis_cluster() {
    // This process reads the cluster's names, as the nodes write them.
    keys::use_hash_tags();
    // Secured as a deployment would be: the URL's password reaches every master and replica.
    let cluster = RedisCluster::start_secured(Some("s3cret"));
    let intruder = Node::start(
        NodeOpts::new()
            .cluster(&cluster.url_with(Some("guess")))
            .no_wait_ready(),
    );
    let nodes: Vec<Node> = (0..3).map(|_| node(&cluster)).collect();
    let [a, b, c] = [&nodes[0], &nodes[1], &nodes[2]];

    // First, while bob's stream is empty (the resume scenario counts from its start).
    scenarios::disconnect_and_resume(a, b);
    scenarios::direct_messages_cross_nodes_both_ways(a, b, &|user| presence_nodes(&cluster, user));
    // The keys are where the hash tags put them: a user's presence and history on one master.
    assert_eq!(keys::presence("bob"), "presence:{bob}");
    let bob_master = cluster.master_of(&keys::presence("bob"));
    assert_eq!(cluster.master_of(&keys::history_stream("bob")), bob_master);
    assert_eq!(cluster.master_of(&keys::history_meta("bob")), bob_master);

    scenarios::fan_out_to_300_subscribers_on_three_nodes(&nodes);

    // Channel and user presence across the nodes.
    let mut amy = a.identified("amy");
    let mut ben = b.identified("ben");
    let mut cid = c.identified("cid");
    for client in [&mut amy, &mut ben, &mut cid] {
        subscribe(client, "room");
    }
    let mut asker = a.identified("asker");
    eventually("three users in the channel's presence", || {
        channel_presence(&mut asker, "room") == json!(["amy", "ben", "cid"])
    });
    let reply = asker.request(json!({"op": "presence", "id": "q", "users": ["ben", "cid", "zed"]}));
    assert_eq!(
        reply["online"],
        json!({"ben": true, "cid": true, "zed": false}),
        "{reply}"
    );

    scenarios::senders_on_two_nodes_make_one_order(b, c);

    // A killed node's members stop counting and are swept (one script per channel, each in its
    // channel's slot).
    let mut nodes = nodes;
    let mut c = nodes.pop().expect("three nodes");
    c.sigkill();
    eventually("cid's member field swept", || {
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(keys::channel_members("room"))
            .query(&mut cluster.conn())
            .unwrap_or_default();
        fields.iter().all(|f| !f.ends_with("\ncid"))
    });
    assert_eq!(channel_presence(&mut asker, "room"), json!(["amy", "ben"]));
    let ack = publish(&mut ben, "after-kill", "room", json!("still here"));
    assert_eq!(ack["conns"], 1, "only amy, on another node: {ack}");
    assert_eq!(amy.recv_json()["data"], "still here");
    // cid fails over to node a (as tests/cluster_failover.rs): a send from node b reaches it there.
    let mut cid = nodes[0].identified("cid");
    eventually("cid reachable on node a", || {
        scenarios::send(&mut ben, "to-cid", "cid", json!("found you"))["status"] == "delivered"
    });
    assert_eq!(cid.recv_json()["data"], "found you");

    // A node with a wrong password never joined.
    let (status, body) = intruder.http_get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(intruder.metric_sum("gateway_redis_up", &[]), 0.0);
}

/// Runs the direct-message load across the failure of the master serving the subscriber's topic,
/// caused by `fail` (given the cluster, the master's index and its replica's; it returns once the
/// cluster has settled, with how long that took), and checks the module doc.
fn master_fails_under_load(
    fault: &str,
    fail: impl FnOnce(&mut RedisCluster, usize, usize) -> Duration,
) {
    keys::use_hash_tags();
    let mut cluster = RedisCluster::start();
    let a = node(&cluster);
    let b = node(&cluster);
    // The master holding a subscriber's channel topic (and about a third of the load's streams).
    let master = cluster.master_of(&keys::channel("news"));
    let replica = cluster.replica_of(master);
    let mut sub = a.identified("news-sub");
    subscribe(&mut sub, "news");
    // Node A leaves the topic and comes back: the confirmation of its own unsubscribe must not be
    // taken for the cluster ending the subscription, nor hide it when the failover does.
    let ack = sub.request(json!({"op": "unsubscribe", "id": "u", "channel": "news"}));
    assert_eq!(ack["status"], "unsubscribed", "{ack}");
    subscribe(&mut sub, "news");
    let mut timings = None;
    let r = round(a.ws_addr, b.ws_addr, || {
        let start = Instant::now();
        let promoted = fail(&mut cluster, master, replica);
        let settled = Instant::now();
        // Back when a direct message crosses the nodes again.
        let mut on_a = a.identified("probe-a");
        let mut on_b = b.identified("probe-b");
        loop {
            let ack = scenarios::send(&mut on_b, "probe", "probe-a", json!("probe"));
            if ack["status"] == "delivered" {
                assert_eq!(on_a.recv_json()["data"], "probe");
                break;
            }
            assert!(
                settled.elapsed() < RECOVERY_BOUND,
                "the nodes did not deliver across within {RECOVERY_BOUND:?} of the cluster settling: {ack}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        timings = Some((promoted, start.elapsed()));
        vec![a.ws_addr, b.ws_addr]
    });
    let (promoted, back) = timings.expect("the fault ran");
    r.check_failover();
    // A publish from B reaches the subscriber on A after the failure.
    let mut publisher = b.identified("news-pub");
    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        let ack = publish(&mut publisher, "p", "news", json!({"after": "failover"}));
        if ack["conns"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the subscriber was not reached again: {ack}\nthe subscriber's node:\n{}",
            a.stderr_tail(20_000)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = sub.recv_json();
    assert_eq!(m["data"], json!({"after": "failover"}), "{m}");
    // The topic is held once, wherever it was placed again, and leaving the channel ends it there.
    let topic = keys::channel("news");
    assert_eq!(cluster.shard_subscribers(&topic), 1, "{topic}");
    let ack = sub.request(json!({"op": "unsubscribe", "id": "u2", "channel": "news"}));
    assert_eq!(ack["status"], "unsubscribed", "{ack}");
    let deadline = Instant::now() + RECOVERY_BOUND;
    while cluster.shard_subscribers(&topic) > 0 {
        assert!(
            Instant::now() < deadline,
            "the node still listens to {topic} after its last subscriber left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let repeated: f64 = [&a, &b]
        .iter()
        .map(|n| n.metric_sum("gateway_cluster_appends_repeated_total", &[]))
        .sum();
    eprintln!(
        "REDIS CLUSTER {fault}: settled {promoted:?} after the fault began, cross-node delivery back after {back:?}; \
         appends sent again and recognised {repeated}; {}",
        r.summary()
    );
}

#[test]
fn cluster_failover_of_a_master_under_load_loses_no_acked_message() {
    master_fails_under_load("CLUSTER FAILOVER", |cluster, _, replica| {
        cluster.failover(replica);
        cluster.wait_master(replica, RECOVERY_BOUND)
    });
}

#[test]
fn sigkill_of_a_master_under_load_loses_no_acked_message() {
    master_fails_under_load("SIGKILL of a master", |cluster, master, replica| {
        cluster.servers[master].kill();
        cluster.wait_master(replica, RECOVERY_BOUND)
    });
}

/// A resharding rather than a failure: every slot of the master is moved, keys and all, to another
/// master while the load runs (ASK during each slot's move, MOVED after it, the subscriber's shard
/// channel ended on the old master and subscribed again on the new one).
///
/// 20 runs (2026-12-03): 19 passed (0 acked lost, no `unavailable`, 5,461 slots moved in 14-28 s);
/// in one `redis-cli --cluster reshard` itself failed, on this 2-vCPU box that also runs six Redis
/// servers, two nodes and the load. Before the moved topics were placed again on a fresh connection
/// (the session was restarted instead), 8 of 20 runs failed: a subscriber not reached again, or
/// acked messages lost to `too_old`. Ignored in the suite for its length (25-40 s) and that tool's
/// failure; run it with `scripts/test --test redis_cluster -- --ignored --nocapture`.
#[test]
#[ignore = "25-40 s, and redis-cli --cluster reshard can fail on a loaded 2-vCPU box: see the doc comment"]
fn resharding_a_master_away_under_load_loses_no_acked_message() {
    master_fails_under_load("resharding every slot of a master", |cluster, master, _| {
        let start = Instant::now();
        let slots = cluster.reshard_all(master, (master + 1) % 3);
        eprintln!(
            "REDIS CLUSTER resharding moved {slots} slots in {:?}",
            start.elapsed()
        );
        start.elapsed()
    });
}
