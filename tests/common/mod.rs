//! Shared harness for the integration tests: spawns a real `gateway serve` (or `echo`) child process on
//! ephemeral ports, waits for its stdout line and `/readyz`, and offers a blocking WebSocket client, a raw
//! frame-level one ([`RawWs`]), admin HTTP helpers, Prometheus-text parsing, JWT minting and a real
//! `redis-server` ([`redis`]). Every blocking step is bounded by a timeout so that a misbehaving server
//! fails a test with a clear message instead of hanging it.
#![allow(dead_code)]

mod admin;
mod client;
pub mod cut_proxy;
pub mod hooks;
mod jwt;
pub mod load;
mod opts;
pub mod pusher;
pub mod raw;
pub mod redis;
pub mod redis_cluster;
pub mod scenarios;
pub mod sentinel;
mod wire;

#[allow(unused_imports)]
pub use admin::{http_request, metric_sum, try_http_get};
#[allow(unused_imports)]
pub use client::{Client, CloseInfo, IO_TIMEOUT, Incoming, assert_error};
#[allow(unused_imports)]
pub use jwt::{fixture, hs256_claims, hs256_token, rs256_token, unix_now};
#[allow(unused_imports)]
pub use opts::{NodeOpts, toml_string};
#[allow(unused_imports)]
pub use wire::{OP_CLOSE, RawWs, ServerFrame, client_frame, parse_frames};

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bound for the start-up line and for `/readyz` to become 200.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between two polls of an admin endpoint or of the child's exit status.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How much of the captured stderr is printed when a test fails.
const STDERR_TAIL_BYTES: usize = 24 * 1024;

/// Makes temp dirs and node ids unique within one test binary.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A running `gateway serve` child process; killed on drop (its stderr is printed if the test failed).
pub struct Node {
    /// The child process (the gateway itself: `prlimit` execs it).
    child: Child,
    /// WebSocket listen address from the stdout line.
    pub ws_addr: SocketAddr,
    /// Admin HTTP address from the stdout line.
    pub admin_addr: SocketAddr,
    /// Node id passed with `--node-id`.
    pub node_id: String,
    /// `shards=` from the stdout line.
    pub shards: usize,
    /// `max_connections=` from the stdout line.
    pub max_connections: u64,
    /// `nofile=` from the stdout line.
    pub nofile: u64,
    /// The full stdout line.
    pub listening_line: String,
    /// Everything the child wrote to stderr (and stdout after the first line).
    log: Arc<Mutex<Vec<u8>>>,
    /// Temp dir holding the config file; removed on drop.
    dir: PathBuf,
    /// Exit status once observed.
    exited: Option<ExitStatus>,
}

/// Fields of the `gateway listening ...` line.
struct Listening {
    ws: SocketAddr,
    admin: SocketAddr,
    shards: usize,
    node: String,
    max_connections: u64,
    nofile: u64,
}

fn parse_listening(line: &str) -> Result<Listening, String> {
    let rest = line
        .strip_prefix("gateway listening ")
        .ok_or_else(|| format!("line does not start with `gateway listening `: {line:?}"))?;
    let mut kv = BTreeMap::new();
    for tok in rest.split_whitespace() {
        let (k, v) = tok
            .split_once('=')
            .ok_or_else(|| format!("token {tok:?} is not key=value in {line:?}"))?;
        kv.insert(k.to_string(), v.to_string());
    }
    let get = |k: &str| {
        kv.get(k)
            .cloned()
            .ok_or_else(|| format!("missing `{k}=` in {line:?}"))
    };
    let num = |k: &str| -> Result<u64, String> {
        get(k)?
            .parse::<u64>()
            .map_err(|e| format!("`{k}=` is not a number in {line:?}: {e}"))
    };
    Ok(Listening {
        ws: get("ws")?
            .parse()
            .map_err(|e| format!("bad ws= in {line:?}: {e}"))?,
        admin: get("admin")?
            .parse()
            .map_err(|e| format!("bad admin= in {line:?}: {e}"))?,
        shards: num("shards")? as usize,
        node: get("node")?,
        max_connections: num("max_connections")?,
        nofile: num("nofile")?,
    })
}

fn tail(log: &Arc<Mutex<Vec<u8>>>, max: usize) -> String {
    let buf = log.lock().unwrap_or_else(|e| e.into_inner());
    let start = buf.len().saturating_sub(max);
    String::from_utf8_lossy(&buf[start..]).into_owned()
}

fn spawn_drain<R: Read + Send + 'static>(
    src: R,
    log: Arc<Mutex<Vec<u8>>>,
    prefix: &'static str,
    first_line: Option<mpsc::Sender<String>>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(src);
        let mut first_line = first_line;
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(tx) = &first_line
                && text.starts_with("gateway listening ")
            {
                let _ = tx.send(text.trim_end().to_string());
                first_line = None;
            }
            let mut buf = log.lock().unwrap_or_else(|e| e.into_inner());
            buf.extend_from_slice(prefix.as_bytes());
            buf.extend_from_slice(&line);
        }
    });
}

impl Node {
    /// Starts a node with `opts`; panics (with the child's stderr) if it does not become ready in 30 s.
    pub fn start(opts: NodeOpts) -> Node {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("gateway-it-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let config_path = dir.join("gateway.toml");
        std::fs::write(&config_path, opts.render_config()).expect("write config");
        let node_id = format!("itest-{}-{n}", std::process::id());

        let bin = env!("CARGO_BIN_EXE_gateway");
        let mut cmd = match opts.nofile {
            Some((soft, hard)) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={soft}:{hard}")).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg(opts.subcommand)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--admin")
            .arg("127.0.0.1:0")
            .arg("--shards")
            .arg(opts.shards.to_string())
            .arg("--node-id")
            .arg(&node_id)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The harness's own settings are not the gateway's (it rejects unknown GATEWAY_* variables).
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("GATEWAY_TEST_")) {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot spawn {bin} (nofile wrapper: {:?}): {e}",
                opts.nofile
            )
        });

        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        spawn_drain(
            child.stdout.take().expect("stdout piped"),
            log.clone(),
            "[stdout] ",
            Some(tx),
        );
        spawn_drain(
            child.stderr.take().expect("stderr piped"),
            log.clone(),
            "",
            None,
        );

        let fail = |child: &mut Child, msg: String| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            // Give the drain threads a moment to collect the last output of the dead child.
            thread::sleep(Duration::from_millis(100));
            panic!(
                "{msg}\nconfig:\n{}\n--- gateway output (tail) ---\n{}",
                opts.render_config(),
                tail(&log, STDERR_TAIL_BYTES)
            );
        };

        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => fail(
                &mut child,
                format!("gateway did not print `gateway listening ...` within {START_TIMEOUT:?}"),
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().ok();
                fail(
                    &mut child,
                    format!("gateway closed stdout without the listening line (exit: {status:?})"),
                )
            }
        };
        let parsed = match parse_listening(&line) {
            Ok(p) => p,
            Err(e) => fail(&mut child, format!("bad listening line: {e}")),
        };
        if parsed.node != node_id {
            fail(
                &mut child,
                format!(
                    "listening line has node={} but --node-id was {node_id}",
                    parsed.node
                ),
            );
        }
        if parsed.shards != opts.shards {
            fail(
                &mut child,
                format!(
                    "listening line has shards={} but --shards was {}",
                    parsed.shards, opts.shards
                ),
            );
        }

        let deadline = Instant::now() + START_TIMEOUT;
        let mut last: String;
        loop {
            if !opts.wait_ready {
                // The test polls `/readyz` itself (a node expected to start unready).
                break;
            }
            match try_http_get(parsed.admin, "/readyz") {
                Ok((200, _)) => break,
                Ok((status, body)) => last = format!("status {status} body {body:?}"),
                Err(e) => last = format!("error {e}"),
            }
            if let Ok(Some(status)) = child.try_wait() {
                fail(
                    &mut child,
                    format!("gateway exited ({status}) before /readyz was 200"),
                );
            }
            if Instant::now() >= deadline {
                fail(
                    &mut child,
                    format!("/readyz not 200 within {START_TIMEOUT:?}; last: {last}"),
                );
            }
            thread::sleep(POLL_INTERVAL);
        }

        Node {
            child,
            ws_addr: parsed.ws,
            admin_addr: parsed.admin,
            node_id,
            shards: parsed.shards,
            max_connections: parsed.max_connections,
            nofile: parsed.nofile,
            listening_line: line,
            log,
            dir,
            exited: None,
        }
    }

    /// Process id of the gateway.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Last `max` bytes of the gateway's output.
    pub fn stderr_tail(&self, max: usize) -> String {
        tail(&self.log, max)
    }

    /// A connected (not identified) client on `/`; panics if the upgrade fails.
    pub fn client(&self) -> Client {
        Client::connect(self.ws_addr)
    }

    /// A connected client that identified as `user` (dev mode).
    pub fn identified(&self, user: &str) -> Client {
        let mut c = self.client();
        c.identify(user);
        c
    }

    /// `GET path` on the admin port; panics on a transport error.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        try_http_get(self.admin_addr, path)
            .unwrap_or_else(|e| panic!("GET {path} on admin {} failed: {e}", self.admin_addr))
    }

    /// `GET path` on the admin port.
    pub fn try_http_get(&self, path: &str) -> io::Result<(u16, String)> {
        try_http_get(self.admin_addr, path)
    }

    /// A call to the HTTP API with bearer `key` (if any) and a JSON `body` (none for null); returns
    /// (status, JSON answer). Panics on a transport error or a body that is not JSON.
    #[allow(dead_code)]
    pub fn api(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let auth = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, text) = http_request(self.admin_addr, method, path, &headers, &body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {text:?}"));
        (status, value)
    }

    /// The Prometheus text of `/metrics` (asserts status 200).
    pub fn metrics(&self) -> String {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "/metrics status, body: {body}");
        body
    }

    /// Sum of all samples of `name` whose labels include every `(key, value)` of `filter`.
    pub fn metric_sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, filter)
    }

    /// Polls `/metrics` until `metric_sum(name, filter) == value` or `timeout`; returns the last value.
    pub fn wait_metric(
        &self,
        name: &str,
        filter: &[(&str, &str)],
        value: f64,
        timeout: Duration,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric_sum(name, filter);
            if v == value || Instant::now() >= deadline {
                return v;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends SIGTERM to the gateway.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            self.pid()
        );
    }

    /// Sends SIGKILL to the gateway (no clean-up can run) and waits for it to exit.
    pub fn sigkill(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .arg("-KILL")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill -KILL");
        assert!(
            status.success(),
            "kill -KILL {} failed: {status}",
            self.pid()
        );
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits for the gateway to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.exited {
            return s;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(status);
                    return status;
                }
                Ok(None) => {}
                Err(e) => panic!("try_wait failed: {e}"),
            }
            if Instant::now() >= deadline {
                panic!(
                    "gateway did not exit within {timeout:?}\n--- gateway output (tail) ---\n{}",
                    self.stderr_tail(STDERR_TAIL_BYTES)
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- gateway {} ({}) output (tail) ---\n{}\n--- end of gateway output ---",
                self.node_id,
                self.listening_line,
                self.stderr_tail(STDERR_TAIL_BYTES)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    /// The gateway's resident memory (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        raw::rss_bytes(self.pid())
    }
}
