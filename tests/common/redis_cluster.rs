//! A real Redis Cluster for the integration tests: three masters and three replicas, each a
//! `redis-server --cluster-enabled yes` on a free port of 127.0.0.1 (tests/common/redis.rs), joined by
//! `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`, killed on drop. A master is
//! declared failed after [`NODE_TIMEOUT_MS`] without answers, so a SIGKILLed master's replica takes
//! over in a few seconds.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::redis::RedisServer;

/// `cluster-node-timeout`: how long a master may be unreachable before its replica is promoted.
pub const NODE_TIMEOUT_MS: u64 = 1_000;
/// Bound on the cluster becoming ready (slots assigned, replicas in sync, every node agreeing).
const READY_TIMEOUT: Duration = Duration::from_secs(40);

/// Six servers: `servers[0..3]` the masters at the start, `servers[3..6]` the replicas.
pub struct RedisCluster {
    pub servers: Vec<RedisServer>,
    /// `requirepass` (and `masterauth`) of every server, if any.
    password: Option<String>,
}

impl RedisCluster {
    /// Starts three masters and three replicas and waits until the cluster is ready.
    pub fn start() -> RedisCluster {
        RedisCluster::start_secured(None)
    }

    /// [`start`](Self::start) with `requirepass` and `masterauth` on every server.
    pub fn start_secured(password: Option<&str>) -> RedisCluster {
        let timeout = NODE_TIMEOUT_MS.to_string();
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &timeout,
            "--repl-diskless-sync-delay",
            "0",
        ];
        if let Some(pw) = password {
            args.extend(["--requirepass", pw, "--masterauth", pw]);
        }
        let servers: Vec<RedisServer> = (0..6).map(|_| RedisServer::start_with(&args)).collect();
        let addrs: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        // `redis-cli --cluster create` pairs the first servers as masters and the rest as their
        // replicas, in order.
        let mut args = vec!["create".to_string()];
        args.extend(addrs);
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        cluster_cli(password, &args);
        let cluster = RedisCluster {
            servers,
            password: password.map(str::to_string),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !cluster.ready() {
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not become ready in {READY_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// `redis+cluster://` naming every server as a seed, with the cluster's password.
    pub fn url(&self) -> String {
        self.url_with(self.password.as_deref())
    }

    /// [`url`](Self::url) with `password` instead.
    pub fn url_with(&self, password: Option<&str>) -> String {
        let hosts: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let auth = password.map_or(String::new(), |pw| format!(":{pw}@"));
        format!("redis+cluster://{auth}{}", hosts.join(","))
    }

    /// `redis://` for one server, with the cluster's password.
    fn server_url(&self, server: &RedisServer) -> String {
        let auth = self
            .password
            .as_deref()
            .map_or(String::new(), |pw| format!(":{pw}@"));
        format!("redis://{auth}127.0.0.1:{}/", server.port)
    }

    /// A blocking cluster connection, for inspecting the cluster from a test.
    pub fn conn(&self) -> redis::cluster::ClusterConnection {
        let seeds: Vec<String> = self
            .servers
            .iter()
            .filter(|s| s.is_running_now())
            .map(|s| self.server_url(s))
            .collect();
        redis::cluster::ClusterClient::new(seeds)
            .and_then(|c| c.get_connection())
            .expect("connect to the Redis Cluster")
    }

    /// The index in `servers` of the master serving `key`'s slot now.
    pub fn master_of(&self, key: &str) -> usize {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.any())
            .expect("CLUSTER KEYSLOT");
        self.servers
            .iter()
            .position(|s| {
                s.is_running_now()
                    && self.info(s, "replication").contains("role:master")
                    && serves(&self.info_cmd(s, &["CLUSTER", "NODES"]), slot)
            })
            .expect("a master serves the slot")
    }

    /// Subscribers of the shard channel `topic` over every running server (`PUBSUB SHARDNUMSUB`
    /// counts one server's own).
    pub fn shard_subscribers(&self, topic: &str) -> i64 {
        self.servers
            .iter()
            .filter(|s| s.is_running_now())
            .map(|s| {
                let reply: Vec<(String, i64)> = redis::cmd("PUBSUB")
                    .arg("SHARDNUMSUB")
                    .arg(topic)
                    .query(&mut self.server_conn(s))
                    .unwrap_or_default();
                reply.iter().map(|(_, n)| n).sum::<i64>()
            })
            .sum()
    }

    /// The index of the replica of the master at `master` (a running server whose master it is).
    pub fn replica_of(&self, master: usize) -> usize {
        let port = self.servers[master].port;
        self.servers
            .iter()
            .position(|s| {
                s.is_running_now()
                    && self
                        .info(s, "replication")
                        .contains(&format!("master_port:{port}"))
            })
            .expect("the master has a replica")
    }

    /// Promotes the replica at `replica` with `CLUSTER FAILOVER` (its master still runs).
    pub fn failover(&self, replica: usize) {
        let _: () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut self.server_conn(&self.servers[replica]))
            .expect("CLUSTER FAILOVER");
    }

    /// Moves every slot of the master at `from` to the master at `to`, keys included, with
    /// `redis-cli --cluster reshard` (slot by slot: IMPORTING/MIGRATING, MIGRATE of its keys, then
    /// the new owner announced): clients meet ASK and MOVED redirections while it runs, and the
    /// shard channels of each moved slot are ended on the old master. Returns the slots moved.
    pub fn reshard_all(&self, from: usize, to: usize) -> usize {
        let nodes = self.info_cmd(&self.servers[from], &["CLUSTER", "NODES"]);
        let slots: usize = nodes
            .lines()
            .find(|l| l.contains("myself"))
            .map(|me| me.split_whitespace().skip(8).map(range_len).sum())
            .unwrap_or(0);
        assert!(slots > 0, "server {from} serves no slot:\n{nodes}");
        let id = |i: usize| self.info_cmd(&self.servers[i], &["CLUSTER", "MYID"]);
        let from_addr = format!("127.0.0.1:{}", self.servers[from].port);
        let count = slots.to_string();
        let args = [
            "reshard",
            &from_addr,
            "--cluster-from",
            &id(from),
            "--cluster-to",
            &id(to),
            "--cluster-slots",
            &count,
            "--cluster-yes",
        ]
        .map(String::from);
        cluster_cli(self.password.as_deref(), &args);
        slots
    }

    /// Waits until the server at `index` is a master and the cluster agrees (state ok everywhere).
    pub fn wait_master(&self, index: usize, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let master = self
                .info(&self.servers[index], "replication")
                .contains("role:master");
            if master && self.state_ok() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "server {index} was not promoted within {within:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every running server says `cluster_state:ok`.
    fn state_ok(&self) -> bool {
        self.servers.iter().filter(|s| s.is_running_now()).all(|s| {
            self.info_cmd(s, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
        })
    }

    /// Slots assigned and agreed, every replica in sync.
    fn ready(&self) -> bool {
        self.state_ok()
            && self.servers[3..].iter().all(|s| {
                self.info(s, "replication")
                    .contains("master_link_status:up")
            })
            && self.servers.iter().all(|s| {
                self.info_cmd(s, &["CLUSTER", "INFO"])
                    .contains("cluster_known_nodes:6")
            })
    }

    fn any(&self) -> redis::Connection {
        let server = self
            .servers
            .iter()
            .find(|s| s.is_running_now())
            .expect("a running server");
        self.server_conn(server)
    }
}

impl RedisCluster {
    /// `INFO <section>` of one server ("" when it does not answer).
    fn info(&self, server: &RedisServer, section: &str) -> String {
        self.info_cmd(server, &["INFO", section])
    }

    /// A command's text answer from one server ("" when it does not answer).
    fn info_cmd(&self, server: &RedisServer, args: &[&str]) -> String {
        let Ok(mut conn) = redis::Client::open(self.server_url(server))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        else {
            return String::new();
        };
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn).unwrap_or_default()
    }

    /// A blocking connection to one server.
    fn server_conn(&self, server: &RedisServer) -> redis::Connection {
        redis::Client::open(self.server_url(server))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("connect to redis on port {}: {e}", server.port))
    }
}

/// Runs `redis-cli --cluster <args>` (bounded by coreutils `timeout`, so a command that hangs ends)
/// and fails the test when it fails.
fn cluster_cli(password: Option<&str>, args: &[String]) {
    let mut cli = Command::new("timeout");
    if let Some(pw) = password {
        cli.env("REDISCLI_AUTH", pw);
    }
    let out = cli
        .args(["120", "redis-cli", "--cluster"])
        .args(args)
        .output()
        .expect("run redis-cli (install redis-tools)");
    assert!(
        out.status.success(),
        "redis-cli --cluster {} failed: {}\n{}",
        args[0],
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the server whose `CLUSTER NODES` answer is `nodes` serves `slot`, by its own line (the
/// slot ranges follow the eighth field).
fn serves(nodes: &str, slot: u16) -> bool {
    let Some(me) = nodes.lines().find(|l| l.contains("myself")) else {
        return false;
    };
    me.split_whitespace().skip(8).any(|range| {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
    })
}

/// How many slots a `CLUSTER NODES` slot field names (`5461-10922`, `42`; an importing or migrating
/// marker such as `[42->-id]` counts none).
fn range_len(range: &str) -> usize {
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    match (lo.parse::<usize>(), hi.parse::<usize>()) {
        (Ok(lo), Ok(hi)) if hi >= lo => hi - lo + 1,
        _ => 0,
    }
}
