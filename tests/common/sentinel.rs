//! A Sentinel-managed Redis for the integration tests: a master, one replica and three sentinels, all
//! real processes on free ports of 127.0.0.1, killed on drop. The sentinels are `redis-sentinel`
//! (Debian's package, which `.ci/run` installs) or, without it, `redis-server --sentinel` (the same
//! program). They declare a master down after [`DOWN_AFTER_MS`] and agree by a quorum of two.
//! [`SentinelGroup::start_secured`] sets passwords on the servers and the sentinels.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::redis::{RedisServer, free_port};

/// The master's name in the sentinels' configuration.
pub const MASTER_NAME: &str = "gw";
/// How long a master must be unreachable before the sentinels call it down.
pub const DOWN_AFTER_MS: u64 = 1_000;
/// Bound on the group becoming ready (replica in sync, sentinels aware of each other).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One `redis-sentinel` process; killed on drop.
struct Sentinel {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// Its `requirepass`, if any.
    password: Option<String>,
}

/// A master, its replica and three sentinels watching it.
pub struct SentinelGroup {
    /// The master at the start (the replica's master until a failover).
    pub master: RedisServer,
    /// The replica at the start (the master after a failover).
    pub replica: RedisServer,
    sentinels: Vec<Sentinel>,
    /// `requirepass` of the master and the replica, if any.
    master_password: Option<String>,
}

impl SentinelGroup {
    /// Starts the group and waits until the replica is in sync and every sentinel knows the replica
    /// and the two other sentinels (only then can they fail over).
    pub fn start() -> SentinelGroup {
        SentinelGroup::start_secured(None, None)
    }

    /// [`start`](Self::start) with `requirepass` on the master and the replica (`master_password`)
    /// and on the sentinels (`sentinel_password`), each told the other's as a deployment would.
    pub fn start_secured(
        master_password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> SentinelGroup {
        // Without persistence a replica syncs over the socket; no delay before the first sync.
        let mut args = vec!["--repl-diskless-sync-delay", "0"];
        if let Some(pw) = master_password {
            args.extend(["--requirepass", pw, "--masterauth", pw]);
        }
        let master = RedisServer::start_with(&args);
        let master_port = master.port.to_string();
        args.extend(["--replicaof", "127.0.0.1", &master_port]);
        let replica = RedisServer::start_with(&args);
        let group = SentinelGroup {
            sentinels: (0..3)
                .map(|_| Sentinel::start(master.port, master_password, sentinel_password))
                .collect(),
            master,
            replica,
            master_password: master_password.map(str::to_string),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if group.ready() {
                return group;
            }
            assert!(
                Instant::now() < deadline,
                "the Sentinel group did not become ready in {READY_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis+sentinel://` URL naming the three sentinels and the master, with the group's
    /// credentials.
    pub fn url(&self) -> String {
        self.url_with(self.sentinels[0].password.as_deref())
    }

    /// [`url`](Self::url) with `sentinel_password` for the sentinels instead.
    pub fn url_with(&self, sentinel_password: Option<&str>) -> String {
        self.url_listing(&[], sentinel_password)
    }

    /// [`url`](Self::url) listing the sentinels after other addresses (`first`, ports on 127.0.0.1).
    pub fn url_listing(&self, first: &[u16], sentinel_password: Option<&str>) -> String {
        let hosts: Vec<String> = first
            .iter()
            .copied()
            .chain(self.sentinels.iter().map(|s| s.port))
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let auth = userinfo(self.master_password.as_deref());
        let query =
            sentinel_password.map_or(String::new(), |pw| format!("?sentinel_password={pw}"));
        format!(
            "redis+sentinel://{auth}{}/{MASTER_NAME}{query}",
            hosts.join(",")
        )
    }

    /// A blocking connection to `server` (the master or the replica), authenticated.
    pub fn conn(&self, server: &RedisServer) -> redis::Connection {
        let auth = userinfo(self.master_password.as_deref());
        redis::Client::open(format!("redis://{auth}127.0.0.1:{}/", server.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("connect to redis on port {}: {e}", server.port))
    }

    /// The master's port as the first sentinel that answers gives it.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let addr: Option<(String, String)> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME)
                .query(&mut s.conn()?)
                .ok()?;
            addr?.1.parse().ok()
        })
    }

    /// Waits until the sentinels name the server on `port` as the master; returns how long that took.
    pub fn wait_master(&self, port: u16, within: Duration) -> Duration {
        let start = Instant::now();
        while self.master_port() != Some(port) {
            assert!(
                start.elapsed() < within,
                "the sentinels did not promote port {port} within {within:?} (they say {:?})",
                self.master_port()
            );
            thread::sleep(Duration::from_millis(50));
        }
        start.elapsed()
    }

    /// Asks the sentinels to fail over now, without the master failing (`SENTINEL FAILOVER`).
    pub fn failover(&self) {
        let mut conn = self.sentinels[0].conn().expect("connect to a sentinel");
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query(&mut conn)
            .expect("SENTINEL FAILOVER");
    }

    /// Replica in sync; each sentinel sees the replica and two other sentinels.
    fn ready(&self) -> bool {
        let synced = redis::cmd("INFO")
            .arg("replication")
            .query::<String>(&mut self.conn(&self.replica))
            .is_ok_and(|info| info.contains("master_link_status:up"));
        synced
            && self.sentinels.iter().all(|s| {
                let Some(mut conn) = s.conn() else {
                    return false;
                };
                let count = |what: &str, conn: &mut redis::Connection| {
                    redis::cmd("SENTINEL")
                        .arg(what)
                        .arg(MASTER_NAME)
                        .query::<Vec<redis::Value>>(conn)
                        .map_or(0, |v| v.len())
                };
                count("REPLICAS", &mut conn) == 1 && count("SENTINELS", &mut conn) == 2
            })
    }
}

impl Sentinel {
    fn start(master_port: u16, master_password: Option<&str>, password: Option<&str>) -> Sentinel {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("gateway-sentinel-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create sentinel dir");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir.display()
            ) + &master_password.map_or(String::new(), |pw| {
                format!("sentinel auth-pass {MASTER_NAME} {pw}\n")
            }) + &password.map_or(String::new(), |pw| {
                format!("requirepass {pw}\nsentinel sentinel-pass {pw}\n")
            }),
        )
        .expect("write sentinel.conf");
        let log = std::fs::File::create(dir.join("sentinel.log")).expect("sentinel log");
        // The configuration file comes first in both forms.
        let mut command = match which("redis-sentinel") {
            Some(bin) => Command::new(bin),
            None => Command::new("redis-server"),
        };
        command.arg(&conf);
        if which("redis-sentinel").is_none() {
            command.arg("--sentinel");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("sentinel log"))
            .stderr(log)
            .spawn()
            .expect("start redis-sentinel (install the redis-sentinel package)");
        let sentinel = Sentinel {
            child,
            port,
            dir,
            password: password.map(str::to_string),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while sentinel.conn().is_none() {
            assert!(
                Instant::now() < deadline,
                "sentinel on port {port} did not start"
            );
            thread::sleep(Duration::from_millis(50));
        }
        sentinel
    }

    fn conn(&self) -> Option<redis::Connection> {
        let auth = userinfo(self.password.as_deref());
        let client = redis::Client::open(format!("redis://{auth}127.0.0.1:{}/", self.port)).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()?;
        Some(conn)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.dir.join("sentinel.log"))
        {
            eprintln!("--- sentinel {} log ---\n{log}", self.port);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The path of `bin` in `PATH`, if any.
fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

/// `:<password>@` for a `redis://` URL, or nothing without a password.
fn userinfo(password: Option<&str>) -> String {
    password.map_or(String::new(), |pw| format!(":{pw}@"))
}
