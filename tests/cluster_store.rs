//! The Redis side of cluster mode against a real `redis-server` (one per test, on a free port): the
//! presence script's fence, pruning and expiry, the cost of a refresh cycle in round trips, graceful
//! removal, lookups, script reloading, and the node registry's alive → draining → dead lifecycle.
//!
//! Every test drives `gateway::cluster` directly on a current-thread tokio runtime and inspects Redis
//! with a separate blocking connection. Waits for TTLs poll with a bound; none relies on a sleep.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use gateway::cluster::presence::{self, BATCH};
use gateway::cluster::{
    Fence, Liveness, NodeInfo, NodeState, NodeView, PresenceStore, Registry, keys, now_ms,
};
use redis::RedisResult;
use redis::aio::ConnectionManager;

/// Bound for anything that waits on a TTL of a few hundred milliseconds.
const TTL_WAIT: Duration = Duration::from_secs(5);
/// Interval between two polls of Redis.
const POLL: Duration = Duration::from_millis(20);
/// A TTL long enough never to expire during a test.
const LONG_TTL: Duration = Duration::from_secs(90);
/// A TTL short enough for a test to watch it expire.
const SHORT_TTL: Duration = Duration::from_millis(300);

async fn manager(redis: &RedisServer) -> ConnectionManager {
    redis
        .client()
        .get_connection_manager()
        .await
        .unwrap_or_else(|e| panic!("connection manager for {}: {e}", redis.url()))
}

/// Evaluates `$check` (which may `.await`) every [`POLL`] until it is true and yields the time that took;
/// panics after `$timeout` naming `$what`.
macro_rules! eventually {
    ($what:expr, $timeout:expr, $check:expr) => {{
        let start = Instant::now();
        loop {
            if $check {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < $timeout,
                "not within {:?}: {}",
                $timeout,
                $what
            );
            tokio::time::sleep(POLL).await;
        }
    }};
}

fn raw_hash(conn: &mut redis::Connection, key: &str) -> BTreeMap<String, String> {
    redis::cmd("HGETALL").arg(key).query(conn).expect("HGETALL")
}

fn exists(conn: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(conn)
        .expect("EXISTS")
        == 1
}

fn pttl(conn: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(conn).expect("PTTL")
}

/// One `name:value` line of `INFO <section>`, e.g. `total_reads_processed` or `cmdstat_evalsha`.
fn info_line(conn: &mut redis::Connection, section: &str, name: &str) -> Option<String> {
    let text: String = redis::cmd("INFO").arg(section).query(conn).expect("INFO");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::to_string)
}

fn info_u64(conn: &mut redis::Connection, section: &str, name: &str) -> u64 {
    let v = info_line(conn, section, name).unwrap_or_else(|| panic!("no {name} in INFO {section}"));
    v.trim().parse().expect("INFO number")
}

/// `calls=` of `cmdstat_<command>` in `INFO commandstats` (0 when never called).
fn command_calls(conn: &mut redis::Connection, command: &str) -> u64 {
    info_line(conn, "commandstats", &format!("cmdstat_{command}"))
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("calls=")?.parse().ok())
        })
        .unwrap_or(0)
}

fn pairs(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[tokio::test]
async fn stale_presence_write_is_rejected() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let mut a = PresenceStore::new(manager(&redis).await, "node-a", LONG_TTL);
    let t = now_ms();

    assert_eq!(a.set("alice", 2, t).await?, Fence::Applied);
    // A late write stamped before the stored one (a dying node's queued refresh) is fenced.
    assert_eq!(a.set("alice", 5, t - 1).await?, Fence::Stale);
    assert_eq!(a.set("alice", 0, t - 1).await?, Fence::Stale);
    assert_eq!(a.lookup("alice").await?, pairs(&[("node-a", 2)]));
    let key = keys::presence("alice");
    assert_eq!(
        raw_hash(&mut probe, &key),
        BTreeMap::from([("node-a".to_string(), presence::format_value(2, t))])
    );

    // The same timestamp applies: a retried write, or two changes within one millisecond.
    assert_eq!(a.set("alice", 3, t).await?, Fence::Applied);
    assert_eq!(a.lookup("alice").await?, pairs(&[("node-a", 3)]));

    // The fence compares one node's writes: another node's older timestamp lands in its own field.
    let mut b = PresenceStore::new(manager(&redis).await, "node-b", LONG_TTL);
    assert_eq!(b.set("alice", 1, t - 1_000).await?, Fence::Applied);
    assert_eq!(
        a.lookup("alice").await?,
        pairs(&[("node-a", 3), ("node-b", 1)])
    );

    // A restarted process under the same node id: its newer write wins over the old process's late one.
    let mut a_new = PresenceStore::new(manager(&redis).await, "node-a", LONG_TTL);
    assert_eq!(a_new.set("alice", 1, t + 10).await?, Fence::Applied);
    assert_eq!(a.set("alice", 7, t + 5).await?, Fence::Stale);
    assert_eq!(
        b.lookup("alice").await?,
        pairs(&[("node-a", 1), ("node-b", 1)])
    );

    // A write already older than the TTL would be invisible to every reader: it is stale too.
    let ancient = t - LONG_TTL.as_millis() as u64 - 1_000;
    assert_eq!(a.set("bob", 1, ancient).await?, Fence::Stale);
    assert!(!exists(&mut probe, &keys::presence("bob")));
    Ok(())
}

#[tokio::test]
async fn count_zero_removes_the_field_and_the_last_field_the_key() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let mut a = PresenceStore::new(manager(&redis).await, "node-a", LONG_TTL);
    let mut b = PresenceStore::new(manager(&redis).await, "node-b", LONG_TTL);
    let key = keys::presence("alice");
    let t = now_ms();

    a.set("alice", 2, t).await?;
    b.set("alice", 1, t).await?;
    let ttl = pttl(&mut probe, &key);
    assert!(ttl > 0 && ttl <= LONG_TTL.as_millis() as i64, "PTTL {ttl}");

    assert_eq!(a.set("alice", 0, t + 1).await?, Fence::Applied);
    assert_eq!(a.lookup("alice").await?, pairs(&[("node-b", 1)]));
    assert!(!raw_hash(&mut probe, &key).contains_key("node-a"));

    assert_eq!(b.set("alice", 0, t + 1).await?, Fence::Applied);
    assert!(a.lookup("alice").await?.is_empty());
    assert!(
        !exists(&mut probe, &key),
        "an empty presence hash must be gone"
    );

    // Removing what is not there is applied (idempotent) and creates nothing.
    assert_eq!(a.set("alice", 0, t + 2).await?, Fence::Applied);
    assert!(!exists(&mut probe, &key));
    Ok(())
}

#[tokio::test]
async fn crashed_node_is_pruned_while_another_node_refreshes() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let mut a = PresenceStore::new(manager(&redis).await, "node-a", SHORT_TTL);
    let mut b = PresenceStore::new(manager(&redis).await, "node-b", SHORT_TTL);
    let key = keys::presence("alice");

    let written = Instant::now();
    a.set("alice", 1, now_ms()).await?;
    b.set("alice", 1, now_ms()).await?;
    assert_eq!(raw_hash(&mut probe, &key).len(), 2);

    // node-a crashes (writes nothing more); node-b keeps refreshing, which keeps the key alive and runs the
    // script's pruning on every write.
    let waited = eventually!("node-a's field pruned from presence:alice", TTL_WAIT, {
        assert_eq!(b.set("alice", 1, now_ms()).await?, Fence::Applied);
        let fields = raw_hash(&mut probe, &key);
        assert!(fields.contains_key("node-b"), "the refreshed field stays");
        !fields.contains_key("node-a")
    });
    assert!(
        written.elapsed() + Duration::from_millis(10) >= SHORT_TTL,
        "pruned after {waited:?}, before the TTL"
    );
    assert_eq!(b.lookup("alice").await?, pairs(&[("node-b", 1)]));
    assert!(exists(&mut probe, &key));
    Ok(())
}

#[tokio::test]
async fn key_expires_when_no_node_refreshes() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let mut a = PresenceStore::new(manager(&redis).await, "node-a", SHORT_TTL);
    let key = keys::presence("alice");

    a.set("alice", 2, now_ms()).await?;
    let ttl = pttl(&mut probe, &key);
    assert!(ttl > 0 && ttl <= SHORT_TTL.as_millis() as i64, "PTTL {ttl}");
    eventually!(
        "presence:alice expired",
        TTL_WAIT,
        !exists(&mut probe, &key)
    );
    assert!(a.lookup("alice").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn lookup_ignores_expired_fields_before_anyone_prunes_them() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let mut a = PresenceStore::new(manager(&redis).await, "node-a", LONG_TTL);
    let key = keys::presence("alice");
    let t = now_ms();

    a.set("alice", 2, t).await?;
    // A field left by a node that died long ago, which no script run has pruned yet.
    let old = presence::format_value(5, t - 2 * LONG_TTL.as_millis() as u64);
    redis::cmd("HSET")
        .arg(&key)
        .arg("ghost")
        .arg(&old)
        .query::<()>(&mut probe)?;
    redis::cmd("HSET")
        .arg(&key)
        .arg("garbage")
        .arg("not-a-value")
        .query::<()>(&mut probe)?;

    assert_eq!(a.lookup("alice").await?, pairs(&[("node-a", 2)]));
    assert_eq!(
        a.lookup_many(&["alice"]).await?,
        vec![pairs(&[("node-a", 2)])]
    );
    assert_eq!(raw_hash(&mut probe, &key).len(), 3, "lookups do not write");

    // The next write prunes both.
    a.set("alice", 3, t + 1).await?;
    assert_eq!(
        raw_hash(&mut probe, &key),
        BTreeMap::from([("node-a".to_string(), presence::format_value(3, t + 1))])
    );
    Ok(())
}

#[tokio::test]
async fn refresh_of_5000_users_costs_one_round_trip_per_1000() -> RedisResult<()> {
    const USERS: usize = 5_000;
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let mut a = PresenceStore::new(manager(&redis).await, "node-a", LONG_TTL);
    let entries: Vec<(String, u32)> = (0..USERS)
        .map(|i| (format!("user-{i}"), (i % 3) as u32 + 1))
        .collect();
    let batches = USERS.div_ceil(BATCH) as u64;

    for cycle in 0..2u64 {
        let reads_before = info_u64(&mut probe, "stats", "total_reads_processed");
        let evalsha_before = command_calls(&mut probe, "evalsha");
        let trips_before = a.round_trips();

        let fences = a.set_many(&entries, now_ms() + cycle).await?;

        assert_eq!(fences.len(), USERS);
        assert!(fences.iter().all(|f| *f == Fence::Applied));
        // The store's count: one pipeline per batch; the first carries SCRIPT LOAD in front.
        assert_eq!(a.round_trips() - trips_before, batches, "cycle {cycle}");
        // Redis's count: one EVALSHA per user, and the requests arrived in far fewer reads than one
        // per user would need (a read takes up to 16 KiB of pipelined commands; INFO adds one read).
        assert_eq!(
            command_calls(&mut probe, "evalsha") - evalsha_before,
            USERS as u64
        );
        let reads = info_u64(&mut probe, "stats", "total_reads_processed") - reads_before;
        eprintln!("cycle {cycle}: {USERS} writes, {batches} round trips, {reads} server reads");
        assert!(
            reads <= USERS as u64 / 10,
            "{reads} server reads for {USERS} pipelined writes"
        );
    }
    assert_eq!(command_calls(&mut probe, "script|load"), 1);

    // Lookups are pipelined the same way and keep the caller's order; unknown users answer empty.
    let mut users: Vec<&str> = entries.iter().map(|(u, _)| u.as_str()).collect();
    users.insert(1234, "nobody");
    let trips_before = a.round_trips();
    let found = a.lookup_many(&users).await?;
    assert_eq!(
        a.round_trips() - trips_before,
        (USERS + 1).div_ceil(BATCH) as u64
    );
    assert_eq!(found.len(), USERS + 1);
    assert!(found[1234].is_empty());
    for (i, (user, count)) in entries.iter().enumerate() {
        let at = if i < 1234 { i } else { i + 1 };
        assert_eq!(found[at], pairs(&[("node-a", *count)]), "{user}");
    }
    assert!(a.set_many::<&str>(&[], now_ms()).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn set_many_reports_each_fence_in_order() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut a = PresenceStore::new(manager(&redis).await, "node-a", LONG_TTL);
    let t = now_ms();
    // Odd users already hold a newer write.
    let newer: Vec<(String, u32)> = (0..2_500)
        .filter(|i| i % 2 == 1)
        .map(|i| (format!("u{i}"), 9))
        .collect();
    a.set_many(&newer, t + 100).await?;

    let entries: Vec<(String, u32)> = (0..2_500).map(|i| (format!("u{i}"), 1)).collect();
    let fences = a.set_many(&entries, t).await?;
    for (i, fence) in fences.iter().enumerate() {
        let expected = if i % 2 == 1 {
            Fence::Stale
        } else {
            Fence::Applied
        };
        assert_eq!(*fence, expected, "u{i}");
    }
    let found = a.lookup_many(&["u0", "u1"]).await?;
    assert_eq!(
        found,
        vec![pairs(&[("node-a", 1)]), pairs(&[("node-a", 9)])]
    );
    Ok(())
}

#[tokio::test]
async fn remove_node_removes_only_this_nodes_fields() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let mut a = PresenceStore::new(manager(&redis).await, "node-a", LONG_TTL);
    let mut b = PresenceStore::new(manager(&redis).await, "node-b", LONG_TTL);
    let t = now_ms();

    a.set_many(&[("alice", 1), ("bob", 2), ("carol", 1)], t)
        .await?;
    b.set_many(&[("alice", 3), ("bob", 1)], t).await?;

    let users = ["alice", "bob", "carol", "nobody"];
    let trips_before = a.round_trips();
    let fences = a.remove_node(&users, t + 1).await?;
    assert_eq!(
        a.round_trips() - trips_before,
        1,
        "one pipelined round trip"
    );
    assert_eq!(fences, vec![Fence::Applied; 4]);
    assert_eq!(
        b.lookup_many(&users).await?,
        vec![
            pairs(&[("node-b", 3)]),
            pairs(&[("node-b", 1)]),
            vec![],
            vec![]
        ]
    );
    assert!(!exists(&mut probe, &keys::presence("carol")));

    // A dying process's late removal does not delete what its successor (same node id) wrote since.
    let mut a_new = PresenceStore::new(manager(&redis).await, "node-a", LONG_TTL);
    a_new.set("dave", 1, t + 10).await?;
    assert_eq!(a.remove_node(&["dave"], t + 5).await?, vec![Fence::Stale]);
    assert_eq!(b.lookup("dave").await?, pairs(&[("node-a", 1)]));
    Ok(())
}

#[tokio::test]
async fn script_is_reloaded_after_script_flush() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let mut a = PresenceStore::new(manager(&redis).await, "node-a", LONG_TTL);
    let t = now_ms();

    assert_eq!(a.set("alice", 1, t).await?, Fence::Applied);
    assert_eq!(
        a.round_trips(),
        1,
        "the first call loads the script in the same round trip"
    );
    redis::cmd("SCRIPT").arg("FLUSH").query::<()>(&mut probe)?;

    // NOSCRIPT: load and retry once.
    let fences = a.set_many(&[("alice", 2), ("bob", 1)], t + 1).await?;
    assert_eq!(fences, vec![Fence::Applied; 2]);
    assert_eq!(a.round_trips(), 3);
    assert_eq!(
        a.lookup_many(&["alice", "bob"]).await?,
        vec![pairs(&[("node-a", 2)]), pairs(&[("node-a", 1)])]
    );
    Ok(())
}

#[tokio::test]
async fn store_recovers_when_redis_restarts_empty() -> RedisResult<()> {
    let mut redis = RedisServer::start();
    let mut a = PresenceStore::new(manager(&redis).await, "node-a", LONG_TTL);
    assert_eq!(a.set("alice", 1, now_ms()).await?, Fence::Applied);

    redis.restart_empty();
    // The connection manager reconnects after the first failure; the new server lacks the script.
    eventually!(
        "presence write accepted by the restarted Redis",
        TTL_WAIT,
        matches!(a.set("alice", 2, now_ms()).await, Ok(Fence::Applied))
    );
    assert_eq!(a.lookup("alice").await?, pairs(&[("node-a", 2)]));
    // The new server got the script again (through the NOSCRIPT path).
    assert_eq!(command_calls(&mut redis.conn(), "script|load"), 1);
    Ok(())
}

fn node_info(port: u16) -> NodeInfo {
    NodeInfo {
        ws: format!("127.0.0.1:{port}"),
        admin: format!("127.0.0.1:{}", port + 1000),
        started_ms: now_ms(),
    }
}

fn states(nodes: &[NodeView]) -> Vec<(&str, Liveness)> {
    nodes.iter().map(|n| (n.id.as_str(), n.state)).collect()
}

#[tokio::test]
async fn registry_node_goes_alive_draining_then_dead_after_ttl() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let info = node_info(8080);
    let mut reg = Registry::new(manager(&redis).await, "gw-a", info.clone(), SHORT_TTL);
    let alive_key = keys::node_alive("gw-a");

    let before = now_ms();
    reg.heartbeat(NodeState::Alive).await?;
    let nodes = reg.list().await?;
    assert_eq!(nodes.len(), 1);
    let view = &nodes[0];
    assert_eq!((view.id.as_str(), view.state), ("gw-a", Liveness::Alive));
    assert_eq!((&view.ws, &view.admin), (&info.ws, &info.admin));
    assert_eq!(view.started_ms, info.started_ms);
    assert!(view.heartbeat_ms >= before && view.heartbeat_ms <= now_ms());
    let ttl = pttl(&mut probe, &alive_key);
    assert!(ttl > 0 && ttl <= SHORT_TTL.as_millis() as i64, "PTTL {ttl}");
    let raw: Option<String> = redis::cmd("HGET")
        .arg(keys::NODES)
        .arg("gw-a")
        .query(&mut probe)?;
    assert!(raw.unwrap().contains(r#""state":"alive""#));

    let last = Instant::now();
    reg.heartbeat(NodeState::Draining).await?;
    assert_eq!(
        states(&reg.list().await?),
        vec![("gw-a", Liveness::Draining)]
    );

    // No more heartbeats: the alive key expires and the node shows as dead, description kept.
    eventually!(
        "gw-a listed as dead",
        TTL_WAIT,
        reg.list().await?[0].state == Liveness::Dead
    );
    assert!(
        last.elapsed() + Duration::from_millis(10) >= SHORT_TTL,
        "dead after {:?}, before the TTL",
        last.elapsed()
    );
    let nodes = reg.list().await?;
    assert_eq!(nodes[0].ws, info.ws);
    assert!(!exists(&mut probe, &alive_key));

    // A heartbeat brings it back.
    reg.heartbeat(NodeState::Alive).await?;
    assert_eq!(states(&reg.list().await?), vec![("gw-a", Liveness::Alive)]);
    Ok(())
}

#[tokio::test]
async fn registry_lists_nodes_and_remove_is_immediate() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let mut regs = Vec::new();
    for (i, id) in ["gw-c", "gw-a", "gw-b"].into_iter().enumerate() {
        let mut reg = Registry::new(
            manager(&redis).await,
            id,
            node_info(8080 + i as u16),
            LONG_TTL,
        );
        reg.heartbeat(NodeState::Alive).await?;
        regs.push(reg);
    }
    assert_eq!(
        states(&regs[0].list().await?),
        vec![
            ("gw-a", Liveness::Alive),
            ("gw-b", Liveness::Alive),
            ("gw-c", Liveness::Alive)
        ]
    );

    regs[2].remove().await?; // gw-b, graceful
    assert_eq!(
        states(&regs[0].list().await?),
        vec![("gw-a", Liveness::Alive), ("gw-c", Liveness::Alive)]
    );
    assert!(!exists(&mut probe, &keys::node_alive("gw-b")));
    let fields = raw_hash(&mut probe, keys::NODES);
    assert!(!fields.contains_key("gw-b"));
    Ok(())
}

#[tokio::test]
async fn prune_dead_removes_only_nodes_dead_for_long() -> RedisResult<()> {
    let redis = RedisServer::start();
    let mut probe = redis.conn();
    let mut a = Registry::new(manager(&redis).await, "gw-a", node_info(1), SHORT_TTL);
    let mut b = Registry::new(manager(&redis).await, "gw-b", node_info(2), SHORT_TTL);
    a.heartbeat(NodeState::Alive).await?;
    b.heartbeat(NodeState::Alive).await?;
    // An entry nobody can read (another tool, a corrupted write), without an alive key.
    redis::cmd("HSET")
        .arg(keys::NODES)
        .arg("junk")
        .arg("not json")
        .query::<()>(&mut probe)?;
    assert_eq!(
        states(&a.list().await?),
        vec![("gw-a", Liveness::Alive), ("gw-b", Liveness::Alive)],
        "unreadable entries are not listed"
    );

    // gw-a keeps heartbeating; gw-b stops.
    eventually!("gw-b dead", TTL_WAIT, {
        a.heartbeat(NodeState::Alive).await?;
        a.list()
            .await?
            .iter()
            .any(|n| n.id == "gw-b" && n.state == Liveness::Dead)
    });

    // Dead, but not for a minute: only the unreadable entry goes.
    assert_eq!(a.prune_dead(Duration::from_secs(60)).await?, vec!["junk"]);
    assert_eq!(
        states(&a.list().await?),
        vec![("gw-a", Liveness::Alive), ("gw-b", Liveness::Dead)]
    );
    // Dead for longer than zero: gw-b goes, the live gw-a stays.
    assert_eq!(a.prune_dead(Duration::ZERO).await?, vec!["gw-b"]);
    assert_eq!(states(&a.list().await?), vec![("gw-a", Liveness::Alive)]);
    assert_eq!(a.prune_dead(Duration::ZERO).await?, Vec::<String>::new());
    Ok(())
}
