//! A real `redis-server` for the integration tests: started on a free port in a temp dir, with no
//! persistence (`--save '' --appendonly no`), awaited with PING, killed on drop.
//!
//! Tests that exercise failures use [`RedisServer::kill`] (SIGKILL: Redis gone, connections reset) and
//! [`RedisServer::restart_empty`] (a fresh, empty server on the same port, as after a Redis restart without
//! persistence). The binary is `redis-server` from `PATH`, or `GATEWAY_TEST_REDIS_SERVER`; `.ci/run`
//! installs it. Its output goes to a log file that is printed when a test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::POLL_INTERVAL;

/// Bound for `redis-server` to answer PING after a start.
pub const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes temp dirs unique within one test binary.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A `redis-server` child process on 127.0.0.1; killed on drop.
pub struct RedisServer {
    /// The running server; `None` after [`kill`](Self::kill).
    child: Option<Child>,
    /// The port, kept across restarts so that clients reconnect to the same address.
    pub port: u16,
    /// Working directory and log file; removed on drop.
    dir: PathBuf,
    /// Arguments after the defaults (e.g. `--replicaof`), kept across restarts.
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING; panics with its log otherwise.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// [`start`](Self::start) with more arguments for `redis-server` (they win over the defaults).
    pub fn start_with(args: &[&str]) -> RedisServer {
        let mut server = RedisServer::unstarted();
        server.args = args.iter().map(|a| a.to_string()).collect();
        // The free port is found by binding port 0 and releasing it, so another process may take it
        // before redis-server binds: try a few ports.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}\n{}", server.log_tail());
    }

    /// Starts a server on `port` (for a test that pointed a node at the port before Redis ran, see
    /// [`free_port`]) and waits until it answers PING; panics with its log otherwise.
    pub fn start_on(port: u16) -> RedisServer {
        let mut server = RedisServer::unstarted();
        server.port = port;
        if let Err(e) = server.spawn() {
            panic!(
                "redis-server did not start on port {port}: {e}\n{}",
                server.log_tail()
            );
        }
        server
    }

    /// A fresh temp dir and no process yet.
    fn unstarted() -> RedisServer {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("gateway-redis-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create redis temp dir");
        RedisServer {
            child: None,
            port: 0,
            dir,
            args: Vec::new(),
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A client for [`url`](Self::url).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis url")
    }

    /// A blocking connection, for inspecting Redis from a test.
    pub fn conn(&self) -> redis::Connection {
        self.client()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to redis at {}: {e}", self.url()))
    }

    /// SIGKILLs the server (no-op if it is not running): the port refuses connections until a restart.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs and starts an empty one on the same port.
    pub fn restart_empty(&mut self) {
        self.kill();
        // The old listener is closed once `wait` returned; a connection in TIME_WAIT does not stop a
        // listener with SO_REUSEADDR (which Redis sets), so this only retries a transient failure.
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!(
                        "redis-server did not restart on port {}: {e}\n{}",
                        self.port,
                        self.log_tail()
                    )
                }
                Err(_) => thread::sleep(POLL_INTERVAL),
            }
        }
    }

    /// True unless [`kill`](Self::kill)ed (or never started): no wait on the process.
    pub fn is_running_now(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the server process is running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts `redis-server` on `self.port` and waits for PING.
    fn spawn(&mut self) -> Result<(), String> {
        let bin = std::env::var("GATEWAY_TEST_REDIS_SERVER").unwrap_or("redis-server".into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .map_err(|e| format!("open redis log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new(&bin)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                format!("cannot run {bin:?} ({e}); install redis-server or set GATEWAY_TEST_REDIS_SERVER")
            })?;
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            if ping(self.addr()) {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "redis-server on port {} exited: {status}",
                    self.port
                ));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {REDIS_START_TIMEOUT:?}",
                    self.port
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join("redis.log")) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(8 * 1024);
        let start = (start..=text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        format!(
            "--- redis-server log (tail) ---\n{}\n--- end ---",
            &text[start..]
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port that was free a moment ago (bound to 127.0.0.1:0 and released): nothing listens on it until
/// someone binds it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Sends an inline PING and expects `+PONG` (or `-NOAUTH`).
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    // A server with `requirepass` answers `-NOAUTH`: up all the same.
    BufReader::new(s).read_line(&mut line).is_ok()
        && (line.starts_with("+PONG") || line.starts_with("-NOAUTH"))
}
