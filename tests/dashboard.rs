//! The live dashboard (`GET /dashboard`) end to end, in a real browser: two nodes in cluster mode share a
//! real redis-server, and headless Chromium, driven by `scripts/dashboard-check.py` over the DevTools
//! protocol, loads node A's dashboard. The page must load without console errors, show both nodes with
//! their connection counts, follow clients connecting to either node (same page, no reload), show
//! messages per second while messages flow and show a killed node as dead. A screenshot is saved as `target/dashboard.png`.
//!
//! Needs `/usr/bin/chromium` (Debian package `chromium`; CI installs it) and Python's `websockets`
//! (`scripts/test` installs it); `GATEWAY_TEST_PYTHON` selects the interpreter (default `python3`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{Client, Node, NodeOpts};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound of each wait inside the script.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one answer line of the script: its own wait plus Chromium start-up and slack.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

fn python() -> String {
    std::env::var("GATEWAY_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Fails with what to install when Chromium or Python's `websockets` is missing.
fn require_tools() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install the Debian `chromium` package (`apt-get install chromium`); \
         CI installs it"
    );
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import websockets.sync.client"])
        .output();
    if !matches!(&probe, Ok(out) if out.status.success()) {
        panic!(
            "`{py} -c 'import websockets.sync.client'` failed ({probe:?}): install it with \
             `{py} -m pip install websockets` (scripts/test does)"
        );
    }
}

fn node(redis: &RedisServer) -> Node {
    Node::start(NodeOpts::new().shards(2).cluster(&redis.url()))
}

/// `GET /dashboard/data` on `node`.
fn data(node: &Node) -> Value {
    let (status, body) = node.http_get("/dashboard/data");
    assert_eq!(status, 200, "/dashboard/data: {body}");
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/dashboard/data is not JSON ({e}): {body}"))
}

/// Polls `/dashboard/data` on `node` until `ok` accepts it; panics with the last answer after 20 s.
fn wait_data(node: &Node, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let d = data(node);
        if ok(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; last /dashboard/data: {d}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// `scripts/dashboard-check.py --steps` running against one dashboard URL.
struct Checker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Checker {
    /// Starts the script on `url`; returns it with its first answer (the page loaded).
    fn start(url: &str) -> (Checker, Value) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dashboard-check.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(url)
            .arg("--steps")
            .arg("--timeout")
            .arg(STEP_TIMEOUT.as_secs().to_string())
            .arg("--chromium")
            .arg(CHROMIUM)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {script}: {e}", python()));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout piped");
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr piped");
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        let mut checker = Checker {
            child,
            stdin,
            lines,
            stderr,
        };
        let first = checker.answer("load");
        (checker, first)
    }

    /// The next JSON answer; panics (with the script's stderr) on a timeout or a non-JSON line.
    fn answer(&mut self, step: &str) -> Value {
        let line = self.lines.recv_timeout(LINE_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "dashboard-check.py gave no answer to {step} within {LINE_TIMEOUT:?} ({e}); stderr:\n{}",
                self.stderr.lock().unwrap()
            )
        });
        let answer: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("dashboard-check.py answered {step} with a non-JSON line ({e}): {line}")
        });
        assert_eq!(answer["ok"], true, "{step} failed: {answer:#}");
        assert_eq!(
            answer["errors"],
            json!([]),
            "console errors after {step}: {answer:#}"
        );
        answer
    }

    /// Sends one command and returns its answer (asserted ok, console clean).
    fn step(&mut self, command: Value) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("write to dashboard-check.py");
        stdin.flush().expect("flush to dashboard-check.py");
        self.answer(&command.to_string())
    }

    /// Ends the script (end of input) and waits for it, bounded.
    fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "dashboard-check.py did not exit within 30 s of the end of its input"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Checker {
    /// On a failed test: SIGTERM lets the script kill its Chromium; SIGKILL after 10 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `target/dashboard.png` (beside the test's scratch directory, so it follows `CARGO_TARGET_DIR`).
fn screenshot_path() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("dashboard.png")
}

/// The node row `id` of a script answer.
fn row<'a>(answer: &'a Value, id: &str) -> &'a Value {
    answer["nodes"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("no row for {id}: {answer:#}"))
}

#[test]
fn dashboard_shows_a_live_two_node_cluster_in_a_browser() {
    require_tools();
    let redis = RedisServer::start();
    let a = node(&redis);
    let mut b = node(&redis);
    let (ia, ib) = (a.node_id.clone(), b.node_id.clone());

    // The page itself: embedded HTML that loads nothing from elsewhere.
    let (status, head_body, page) = {
        let (status, body) = a.http_get("/dashboard");
        let (_, head_body) = common::http_request(a.admin_addr, "HEAD", "/dashboard", &[], "")
            .expect("HEAD /dashboard");
        (status, head_body, body)
    };
    assert_eq!(status, 200);
    assert!(head_body.is_empty(), "HEAD has no body");
    assert!(page.starts_with("<!doctype html>"), "{page:.200}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external assets"
    );

    // The JSON it polls: cluster mode, Redis up, both nodes once A has read the registry.
    let d = wait_data(&a, "A's dashboard data lists both nodes", |d| {
        d["nodes"].as_array().is_some_and(|n| n.len() == 2)
    });
    assert_eq!(
        (d["mode"].as_str(), d["redis"].as_str()),
        (Some("cluster"), Some("up")),
        "{d}"
    );
    assert_eq!(d["node"]["id"], ia.as_str(), "{d}");
    assert_eq!(d["node"]["shards"].as_array().map(Vec::len), Some(2), "{d}");
    assert_eq!(row(&d, &ia)["self"], true, "{d}");
    assert_eq!(row(&d, &ib)["state"], "alive", "{d}");

    // The browser loads A's dashboard and shows both nodes with no connections.
    let url = format!("http://{}/dashboard", a.admin_addr);
    let (mut checker, loaded) = Checker::start(&url);
    assert_eq!(loaded["page"]["node"], ia.as_str(), "{loaded:#}");
    assert_eq!(loaded["page"]["redis"], "Redis up", "{loaded:#}");
    let answer = checker.step(json!({"expect": {&ia: 0, &ib: 0}}));
    assert!(
        row(&answer, &ia)["text"]
            .as_str()
            .unwrap()
            .contains("this node")
    );

    // Clients connect to both nodes: the open page follows, A's count live, B's by heartbeat.
    let mut on_a: Vec<Client> = (0..3).map(|i| a.identified(&format!("a{i}"))).collect();
    let on_b: Vec<Client> = (0..2).map(|i| b.identified(&format!("b{i}"))).collect();
    let answer = checker.step(json!({"expect": {
        &ia: {"connections": 3, "state": "alive"},
        &ib: {"connections": 2, "state": "alive"},
    }}));
    assert_eq!(row(&answer, &ia)["shown"], "3", "{answer:#}");
    let d = data(&a);
    let per_shard: u64 = d["node"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(per_shard, 3, "A's shards hold its 3 connections: {d}");

    // Messages flow to A's clients: the page turns the counter deltas into a rate above zero. The
    // screenshot is taken while they still flow.
    for c in &mut on_a {
        let ack = c.request(json!({"op": "subscribe", "id": "s", "channel": "news"}));
        assert_eq!(ack["status"], "subscribed", "{ack}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (admin, stop) = (a.admin_addr, stop.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + LINE_TIMEOUT;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let body = json!({"channel": "news", "data": "tick"}).to_string();
                let (status, answer) =
                    common::http_request(admin, "POST", "/v1/publish", &[], &body)
                        .expect("POST /v1/publish");
                assert_eq!(status, 200, "{answer}");
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let rate = checker.step(json!({
        "wait_js": "Number(document.getElementById('t-rate').innerText.replace(/,/g, '')) || 0"
    }));
    eprintln!("messages/s shown: {}", rate["value"]);
    thread::sleep(Duration::from_secs(2)); // a few points on the chart
    let png = screenshot_path();
    let shot = checker.step(json!({"screenshot": png}));
    assert!(shot["bytes"].as_u64().unwrap_or(0) > 1000, "{shot}");
    eprintln!("dashboard screenshot: {}", png.display());
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher thread");

    // B dies without a word: its alive key expires and the page shows it dead.
    drop(on_b);
    b.sigkill();
    checker.step(json!({"expect": {&ib: {"state": "dead"}, &ia: 3}, "timeout": 20}));

    let status = checker.finish();
    assert!(status.success(), "dashboard-check.py exited with {status}");
}
