//! The deploy files under `deploy/` run for real: a real HAProxy (`deploy/haproxy/haproxy.cfg`) and a
//! real nginx (`deploy/nginx/nginx.conf`), each in front of two gateway nodes sharing a real
//! `redis-server`. The configs are rendered from the deploy files by substituting only the example
//! addresses each file lists in its header (and, for nginx, the pid/log/temp paths; for HAProxy, its
//! global `maxconn`); timeouts, health checks and balancing run as written.
//!
//! The scenario, for each balancer: 200 clients connect through it and identify (unique users; the
//! `ready` frame says which node each is on); node A gets SIGTERM. Its `/readyz` turns 503 at once.
//! HAProxy takes A out of rotation from its `/readyz` check, within the bound its check settings give
//! and before A's listeners close (A's drain_delay_ms is set above that bound); nginx (no active checks)
//! keeps sending new connections to A until A's listeners close, then retries refused connects on B so
//! that no client sees an error. New connections made after the exit all land on B. Every client on A
//! receives close 1012 with a `{"reconnect_after_ms":N}` reason (a bare TCP close fails the test),
//! waits N ms, reconnects through the balancer and lands on B. A exits 0. Then every client sends a
//! direct message to another user: all acked `delivered` to one connection, all received.
//!
//! The binaries are `haproxy` and `nginx` (Debian packages of the same names; `.ci/run` installs them),
//! looked up in /usr/sbin and then PATH.

mod common;
mod deploy_parse;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::redis::{RedisServer, free_port};
use common::{Client, Incoming, Node, NodeOpts};
use deploy_parse::{Haproxy, replace_once, repo_file};
use serde_json::{Value, json};
use tungstenite::Message;

/// Clients connected through the balancer.
const CLIENTS: usize = 200;
/// Node A's drain window and batch interval: 1012s spread over 2 s.
const WINDOW_MS: u64 = 2_000;
const INTERVAL_MS: u64 = 50;
/// Upper bound of the reconnect hint on A (the default, 5 s, would only make the test longer).
const HINT_MAX_MS: u64 = 300;
/// Time between two probes (new connections through the balancer while A drains).
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Bound for one connect + identify through the balancer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The two tests run one after the other: each runs two nodes, a balancer and Redis on a small
/// machine, and the timings they check should not depend on the other test's load.
static SERIAL: Mutex<()> = Mutex::new(());

/// Where a binary from a Debian package is: /usr/sbin (not always in a user's PATH), then PATH.
fn find_binary(name: &str, package: &str) -> PathBuf {
    let mut dirs = vec![PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found in /usr/sbin or PATH: install the Debian package `{package}` \
                 (apt-get install {package}); .ci/run installs it"
            )
        })
}

/// A temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("gateway-lb-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A balancer process, started in a process group of its own (nginx forks workers); on drop the
/// group gets SIGTERM, then SIGKILL if it is still there after 3 s, and the log is printed if the
/// test failed.
struct Balancer {
    name: &'static str,
    child: Child,
    /// Where clients connect.
    addr: SocketAddr,
    /// stdout + stderr of the process (and, for nginx, its error log).
    logs: Vec<PathBuf>,
    _dir: TempDir,
}

impl Balancer {
    /// Spawns `cmd` (output to `dir/<name>.log`) and waits until `addr` accepts TCP connections.
    fn spawn(name: &'static str, mut cmd: Command, addr: SocketAddr, dir: TempDir) -> Balancer {
        let log_path = dir.path().join(format!("{name}.log"));
        let log = File::create(&log_path).expect("create balancer log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        let mut lb = Balancer {
            name,
            child,
            addr,
            logs: vec![log_path, dir.path().join("error.log")],
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return lb;
            }
            if let Ok(Some(status)) = lb.child.try_wait() {
                panic!("{name} exited at start-up ({status}):\n{}", lb.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{name} does not listen on {addr} after 10 s:\n{}",
                lb.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the balancer logged so far.
    fn full_log(&self) -> String {
        self.logs
            .iter()
            .map(|path| {
                let mut text = String::new();
                let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
                text
            })
            .collect()
    }

    /// The last 16 KiB of each log, for failure messages.
    fn log_text(&self) -> String {
        let mut out = String::new();
        for path in &self.logs {
            let mut text = String::new();
            if File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .is_ok()
            {
                let start = text.len().saturating_sub(16 * 1024);
                let start = (start..=text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                out.push_str(&format!("--- {} ---\n{}\n", path.display(), &text[start..]));
            }
        }
        out
    }

    /// Sends `sig` to the balancer's process group.
    fn signal_group(&self, sig: libc::c_int) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group we created for this child.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.log_text());
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Workers of a killed master, or a master that did not stop in time.
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// `deploy/haproxy/haproxy.cfg` in front of `a` and `b`, listening on 127.0.0.1:<free port>.
fn start_haproxy(a: &Node, b: &Node) -> Balancer {
    let bin = find_binary("haproxy", "haproxy");
    let dir = TempDir::new("haproxy");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cfg = repo_file("deploy/haproxy/haproxy.cfg");
    cfg = replace_once(&cfg, "bind *:80", &format!("bind {addr}"), "haproxy listen");
    // A test needs a few hundred connections, not a descriptor table for a million.
    cfg = replace_once(&cfg, "maxconn 500000", "maxconn 4096", "haproxy maxconn");
    for (name, example, node) in [("gw1", "10.0.0.11", a), ("gw2", "10.0.0.12", b)] {
        cfg = replace_once(
            &cfg,
            &format!("server {name} {example}:8080 check port 9090"),
            &format!(
                "server {name} {} check port {}",
                node.ws_addr,
                node.admin_addr.port()
            ),
            "haproxy server",
        );
    }
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("write haproxy.cfg");
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&path).arg("-db");
    Balancer::spawn("haproxy", cmd, addr, dir)
}

/// `deploy/nginx/nginx.conf` in front of `a` and `b`, listening on 127.0.0.1:<free port>, with every
/// file it writes in a temp dir.
fn start_nginx(a: &Node, b: &Node) -> Balancer {
    let bin = find_binary("nginx", "nginx");
    let dir = TempDir::new("nginx");
    let d = dir.path().display().to_string();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut conf = repo_file("deploy/nginx/nginx.conf");
    conf = replace_once(
        &conf,
        "listen 80;",
        &format!("listen {addr};"),
        "nginx listen",
    );
    conf = replace_once(
        &conf,
        "server 10.0.0.11:8080 ",
        &format!("server {} ", a.ws_addr),
        "nginx node A",
    );
    conf = replace_once(
        &conf,
        "server 10.0.0.12:8080 ",
        &format!("server {} ", b.ws_addr),
        "nginx node B",
    );
    conf = replace_once(&conf, "/run/nginx.pid", &format!("{d}/nginx.pid"), "pid");
    conf = replace_once(
        &conf,
        "/var/log/nginx/error.log",
        &format!("{d}/error.log"),
        "error_log",
    );
    conf = replace_once(
        &conf,
        "/var/log/nginx/access.log",
        &format!("{d}/access.log"),
        "access_log",
    );
    let temp_paths: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("    {t}_temp_path {d}/{t}_temp;\n"))
        .collect();
    conf = replace_once(&conf, "http {\n", &format!("http {{\n{temp_paths}"), "http");
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(format!("{d}/"))
        .arg("-e")
        .arg(format!("{d}/error.log"))
        .arg("-c")
        .arg(&path)
        .arg("-g")
        .arg("daemon off;");
    Balancer::spawn("nginx", cmd, addr, dir)
}

/// A gateway node in the cluster, with a drain delay of `delay_ms` and a short, fine-grained drain.
fn node(redis: &RedisServer, delay_ms: u64) -> Node {
    Node::start(
        NodeOpts::new()
            .shards(2)
            .set_str("redis_url", &redis.url())
            .set("limits.rate_limit_per_sec", 0)
            .set("shutdown.drain_delay_ms", delay_ms)
            .set("shutdown.drain_window_ms", WINDOW_MS)
            .set("shutdown.drain_interval_ms", INTERVAL_MS)
            .set("shutdown.reconnect_hint_max_ms", HINT_MAX_MS),
    )
}

/// Connects through the balancer with `?user=<hint>` (the balancing key; none if empty) and identifies
/// as `user`; returns the client and the node from `ready`.
fn connect_via(lb: SocketAddr, hint: &str, user: &str) -> Result<(Client, String), String> {
    let path = if hint.is_empty() {
        "/ws".to_string()
    } else {
        format!("/ws?user={hint}")
    };
    let mut c = Client::try_connect(lb, &path, CONNECT_TIMEOUT)?;
    c.try_send(Message::text(
        json!({"op": "identify", "id": "ident", "user": user}).to_string(),
    ))?;
    match c.try_recv()? {
        Incoming::Json(v) if v["op"] == "ready" && v["user"] == user => {
            let node = v["node"].as_str().ok_or(format!("no node in {v}"))?;
            let node = node.to_string();
            Ok((c, node))
        }
        Incoming::Json(v) => Err(format!("identify answered {v}")),
        Incoming::Close(code) => Err(format!("closed with {code:?} instead of ready")),
    }
}

/// One new connection made through the balancer while A drains.
struct Probe {
    /// When it started, since SIGTERM.
    at: Duration,
    /// The node it landed on, or what went wrong.
    outcome: Result<String, String>,
}

/// Opens a connection through the balancer every `PROBE_EVERY` until `stop`, each with the balancing
/// key of a user that was on A (so it lands on A while A is in rotation), identified as a fresh user.
fn probe(
    lb: SocketAddr,
    hints: Vec<String>,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<Probe>> {
    thread::spawn(move || {
        let mut probes = Vec::new();
        let mut k = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let at = start.elapsed();
            let hint = &hints[k % hints.len()];
            let outcome = connect_via(lb, hint, &format!("probe{k}")).map(|(c, node)| {
                c.close();
                node
            });
            probes.push(Probe { at, outcome });
            k += 1;
            thread::sleep(PROBE_EVERY.saturating_sub(start.elapsed() - at));
        }
        probes
    })
}

/// What the balancer is expected to do once A's /readyz is 503.
#[derive(Clone, Copy)]
enum Exit {
    /// Active checks: A leaves rotation within `bound` of SIGTERM, before its listeners close.
    HealthCheck { bound: Duration },
    /// Passive: A stays in rotation until its listeners close (drain delay), then at once.
    ListenerClose,
}

/// A's client `i` while the drain runs: open, closed (when, hint), reconnected (client on B).
enum Slot {
    Open(Box<Client>),
    Closed { at: Duration, hint: u64 },
    Back,
}

/// The whole scenario behind `lb`; `a` is drained with `delay`.
fn drain_scenario(lb: &Balancer, mut a: Node, b: Node, delay: Duration, exit: Exit) {
    let t_setup = Instant::now();
    warm_up(lb, &a, &b);
    // 200 users through the balancer.
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut node_of: Vec<String> = Vec::new();
    for i in 0..CLIENTS {
        let user = format!("u{i}");
        let (c, node) = connect_via(lb.addr, &user, &user)
            .unwrap_or_else(|e| panic!("client {user} through {}: {e}", lb.name));
        assert!(
            node == a.node_id || node == b.node_id,
            "{user} on unknown node {node}"
        );
        clients.push(Some(c));
        node_of.push(node);
    }
    let on_a: Vec<usize> = (0..CLIENTS).filter(|&i| node_of[i] == a.node_id).collect();
    let on_b = CLIENTS - on_a.len();
    assert!(
        on_a.len() >= 20 && on_b >= 20,
        "{}: the hash spreads 200 users over both nodes: {} on A, {on_b} on B",
        lb.name,
        on_a.len()
    );
    // The cluster works through the balancer: a user on A and one on B talk.
    let (ia, ib) = (
        on_a[0],
        (0..CLIENTS).find(|&i| node_of[i] == b.node_id).unwrap(),
    );
    {
        let (ca, cb) = two_mut(&mut clients, ia, ib);
        let ack = ca.request(json!({"op": "send", "id": "x", "to": format!("u{ib}"), "data": 1}));
        assert_eq!(
            (ack["status"].as_str(), ack["conns"].as_u64()),
            (Some("delivered"), Some(1)),
            "{ack}"
        );
        assert_eq!(cb.recv_json()["from"], format!("u{ia}"));
    }
    let setup = t_setup.elapsed();

    // Drain A.
    let start = Instant::now();
    a.sigterm();
    let flipped = loop {
        if a.http_get("/readyz").0 == 503 {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "A's /readyz still 200 1 s after SIGTERM"
        );
        thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(a.http_get("/healthz").0, 200, "liveness stays 200");
    let stop = Arc::new(AtomicBool::new(false));
    let hints: Vec<String> = on_a.iter().map(|i| format!("u{i}")).collect();
    let prober = probe(lb.addr, hints, start, stop.clone());

    // A's clients: every one gets 1012 with a hint, waits it, and reconnects through the balancer.
    let mut slots: HashMap<usize, Slot> = on_a
        .iter()
        .map(|&i| {
            let c = clients[i].take().unwrap();
            c.ws.get_ref().set_nonblocking(true).unwrap();
            (i, Slot::Open(Box::new(c)))
        })
        .collect();
    let mut closes: Vec<Duration> = Vec::new();
    let mut reconnects: Vec<Duration> = Vec::new();
    let mut connects: Vec<Duration> = Vec::new();
    let mut back_at = Duration::ZERO;
    let limit = delay + Duration::from_millis(WINDOW_MS) + Duration::from_secs(15);
    let mut left = on_a.len();
    while left > 0 {
        assert!(
            start.elapsed() < limit,
            "{}: {left} of A's clients not back on B after {limit:?}",
            lb.name
        );
        for &i in &on_a {
            let slot = slots.get_mut(&i).unwrap();
            match slot {
                Slot::Open(c) => match c.ws.read() {
                    Ok(Message::Close(frame)) => {
                        let _ = c.ws.flush();
                        let at = start.elapsed();
                        let frame = frame.unwrap_or_else(|| panic!("u{i}: close without a code"));
                        assert_eq!(u16::from(frame.code), 1012, "u{i}: {frame:?}");
                        let reason: Value = serde_json::from_str(frame.reason.as_str())
                            .unwrap_or_else(|e| panic!("u{i}: reason {:?}: {e}", frame.reason));
                        let hint = reason["reconnect_after_ms"]
                            .as_u64()
                            .unwrap_or_else(|| panic!("u{i}: reason {reason}"));
                        assert!(hint <= HINT_MAX_MS, "u{i}: {reason}");
                        assert!(
                            at >= delay,
                            "u{i}: closed at {at:?}, before the drain delay {delay:?}"
                        );
                        closes.push(at);
                        *slot = Slot::Closed { at, hint };
                    }
                    Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
                    Ok(other) => panic!("u{i}: unexpected {other:?} while A drains"),
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!(
                        "{}: u{i} on A: {e} before any Close frame (a bare TCP close?)",
                        lb.name
                    ),
                },
                Slot::Closed { at, hint } => {
                    if start.elapsed() < *at + Duration::from_millis(*hint) {
                        continue;
                    }
                    let user = format!("u{i}");
                    let t_connect = Instant::now();
                    let (c, node) = connect_via(lb.addr, &user, &user).unwrap_or_else(|e| {
                        panic!("{}: {user} reconnecting after 1012: {e}", lb.name)
                    });
                    assert_eq!(node, b.node_id, "{user} reconnected onto {node}, not B");
                    back_at = start.elapsed();
                    reconnects.push(back_at - *at);
                    connects.push(t_connect.elapsed());
                    clients[i] = Some(c);
                    *slot = Slot::Back;
                    left -= 1;
                }
                Slot::Back => {}
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
    let status = a.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "A's exit after the drain: {status}");
    let a_exit = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let probes = prober.join().expect("probe thread");

    // Rotation: the first probe that landed on B marks A's exit; every later one landed on B, and
    // none failed (the balancer hid the draining node from new clients).
    for p in &probes {
        if let Err(e) = &p.outcome {
            // nginx may hand a probe to A in the last moment before its listeners close; A's drain
            // then closes it with 1012 before `ready`, like any other client of A.
            let drained = e.contains("Some(1012)") && matches!(exit, Exit::ListenerClose);
            assert!(
                drained,
                "{}: a new connection at {:?} failed: {e}",
                lb.name, p.at
            );
        }
    }
    let first_on_b = probes
        .iter()
        .position(|p| p.outcome.as_deref() == Ok(b.node_id.as_str()))
        .unwrap_or_else(|| panic!("{}: no probe landed on B", lb.name));
    let rotation_exit = probes[first_on_b].at;
    for p in &probes[first_on_b..] {
        if let Ok(node) = &p.outcome {
            assert_eq!(
                node, &b.node_id,
                "{}: a new connection at {:?} (after A left rotation at {rotation_exit:?}) landed on A",
                lb.name, p.at
            );
        }
    }
    assert!(
        first_on_b > 0,
        "{}: probes with A's users' keys land on A while A is in rotation",
        lb.name
    );
    match exit {
        Exit::HealthCheck { bound } => {
            assert!(
                rotation_exit <= bound + PROBE_EVERY,
                "{}: A left rotation after {rotation_exit:?}, beyond its check bound {bound:?}",
                lb.name
            );
            assert!(
                rotation_exit < delay,
                "{}: A left rotation at {rotation_exit:?}, not before its listeners closed ({delay:?})",
                lb.name
            );
        }
        Exit::ListenerClose => {
            // Probes start every 100 ms; the one before the exit may have started just before the
            // listeners closed.
            assert!(
                rotation_exit + PROBE_EVERY >= delay,
                "{}: A left rotation at {rotation_exit:?}, before its listeners closed ({delay:?})",
                lb.name
            );
            assert!(
                rotation_exit <= delay + Duration::from_secs(1),
                "{}: A still got new connections at {rotation_exit:?}, 1 s after its listeners \
                 closed ({delay:?})",
                lb.name
            );
        }
    }

    // Everyone is on B now; direct messages after the reconnection: each user to the next one.
    let t_msgs = Instant::now();
    let mut clients: Vec<Client> = clients.into_iter().map(Option::unwrap).collect();
    let mut inbox: Vec<Vec<Value>> = vec![Vec::new(); CLIENTS];
    for (i, c) in clients.iter_mut().enumerate() {
        c.ws.get_ref().set_nonblocking(false).unwrap();
        let to = format!("u{}", (i + 1) % CLIENTS);
        c.send_json(&json!({"op": "send", "id": format!("m{i}"), "to": to, "data": {"n": i}}));
        loop {
            let v = c.recv_json();
            if v["op"] == "ack" {
                assert_eq!(v["id"], format!("m{i}"), "{v}");
                assert_eq!(
                    (v["status"].as_str(), v["conns"].as_u64()),
                    (Some("delivered"), Some(1)),
                    "u{i} -> {to}: {v}"
                );
                break;
            }
            inbox[i].push(v);
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let from = (i + CLIENTS - 1) % CLIENTS;
        let expected = json!({"op": "message", "from": format!("u{from}"), "data": {"n": from}});
        if inbox[i].is_empty() {
            inbox[i].push(c.recv_json());
        }
        assert_eq!(inbox[i], vec![expected], "u{i}'s messages");
    }
    let msgs = t_msgs.elapsed();

    closes.sort();
    reconnects.sort();
    connects.sort();
    println!(
        "{}: setup {setup:?} ({} on A, {on_b} on B); after SIGTERM: /readyz 503 at {flipped:?}, \
         A out of rotation at {rotation_exit:?} (drain delay {delay:?}, {} probes), 1012s from \
         {:?} to {:?}, close -> ready on B median {:?} max {:?} (of which connect + identify \
         through {}: median {:?} max {:?}; the rest is the hint), all back at {back_at:?}, A \
         exited at {a_exit:?}; {CLIENTS} direct messages in {msgs:?}",
        lb.name,
        on_a.len(),
        probes.len(),
        closes[0],
        closes[closes.len() - 1],
        reconnects[reconnects.len() / 2],
        reconnects[reconnects.len() - 1],
        lb.name,
        connects[connects.len() / 2],
        connects[connects.len() - 1],
    );
    drop(b);
}

/// Waits until the balancer sends clients to both nodes (connections without a balancing key are
/// spread round-robin), so that the 200 users are hashed over both: a balancer may consider its
/// servers down until their first checks passed.
fn warm_up(lb: &Balancer, a: &Node, b: &Node) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut seen_a, mut seen_b) = (false, false);
    let mut k = 0;
    while !(seen_a && seen_b) {
        match connect_via(lb.addr, "", &format!("warmup{k}")) {
            Ok((c, node)) => {
                seen_a |= node == a.node_id;
                seen_b |= node == b.node_id;
                c.close();
            }
            Err(e) => eprintln!("{}: warm-up connection: {e}", lb.name),
        }
        k += 1;
        assert!(
            Instant::now() < deadline,
            "{} does not reach both nodes after 10 s (A: {seen_a}, B: {seen_b})",
            lb.name
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Two distinct clients of `v`.
fn two_mut(v: &mut [Option<Client>], i: usize, j: usize) -> (&mut Client, &mut Client) {
    assert_ne!(i, j);
    let (lo, hi) = (i.min(j), i.max(j));
    let (left, right) = v.split_at_mut(hi);
    let (x, y) = (left[lo].as_mut().unwrap(), right[0].as_mut().unwrap());
    if i < j { (x, y) } else { (y, x) }
}

#[test]
fn haproxy_takes_a_draining_node_out_of_rotation_and_clients_move_with_1012() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let checks = Haproxy::load().checks();
    let bound = checks.exit_bound();
    // A's listeners stay open a little longer than the worst case of HAProxy's checks.
    let delay = bound + Duration::from_millis(500);
    let redis = RedisServer::start();
    let a = node(&redis, delay.as_millis() as u64);
    let b = node(&redis, 100);
    let lb = start_haproxy(&a, &b);
    drain_scenario(&lb, a, b, delay, Exit::HealthCheck { bound });
    // HAProxy's own account: its check saw A's 503 and marked it DOWN.
    let down = lb
        .full_log()
        .lines()
        .find(|l| l.contains("gateway/gw1 is DOWN"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("HAProxy never marked gw1 DOWN:\n{}", lb.log_text()));
    assert!(down.contains("code: 503"), "{down}");
    println!("haproxy: {down}");
}

#[test]
fn nginx_retries_a_drained_node_on_the_other_and_clients_move_with_1012() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let delay = Duration::from_millis(2_000);
    let redis = RedisServer::start();
    let a = node(&redis, delay.as_millis() as u64);
    let b = node(&redis, 100);
    let lb = start_nginx(&a, &b);
    let a_addr = a.ws_addr;
    drain_scenario(&lb, a, b, delay, Exit::ListenerClose);
    // nginx's own account: it met A's closed listeners and went on to the next node.
    let refused = lb
        .full_log()
        .lines()
        .filter(|l| {
            l.contains("Connection refused) while connecting to upstream")
                && l.contains(&format!("upstream: \"http://{a_addr}/"))
        })
        .count();
    assert!(
        refused > 0,
        "nginx's error log shows no refused connect to A ({a_addr}):\n{}",
        lb.log_text()
    );
    println!("nginx: {refused} connects refused by A, each retried on B");
}

/// pusher-js (its Node build, tests/clients/pusher) connects through HAProxy; the node it landed on
/// gets SIGTERM: pusher-js is closed with 4200, reconnects at once through HAProxy to the other node,
/// resubscribes by itself, and a trigger reaches it there. Skipped outside CI without node.
#[test]
fn haproxy_moves_pusher_js_to_the_other_node_on_a_drain() {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/pusher");
    if !driver.join("node_modules/pusher-js").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but tests/clients/pusher/node_modules is missing (npm ci)"
        );
        eprintln!("SKIP haproxy_moves_pusher_js_to_the_other_node_on_a_drain: no node_modules");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let delay = Haproxy::load().checks().exit_bound() + Duration::from_millis(500);
    let redis = RedisServer::start();
    let pusher_node = || {
        Node::start(
            NodeOpts::new()
                .shards(2)
                .set_str("redis_url", &redis.url())
                .set("shutdown.drain_delay_ms", delay.as_millis() as u64)
                .set("shutdown.drain_window_ms", 500)
                .set("shutdown.drain_interval_ms", INTERVAL_MS)
                .env("GATEWAY_PUSHER_APPS", "1:key-1:secret-1"),
        )
    };
    let (a, b) = (pusher_node(), pusher_node());
    let lb = start_haproxy(&a, &b);
    let mut child = Command::new("node")
        .current_dir(&driver)
        .args(["conformance.js", "drain_reconnect"])
        .env("GATEWAY_HOST", lb.addr.ip().to_string())
        .env("GATEWAY_PORT", lb.addr.port().to_string())
        .env("PUSHER_APP_ID", "1")
        .env("PUSHER_KEY", "key-1")
        .env("PUSHER_SECRET", "secret-1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node conformance.js");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut lines, &mut line).expect("driver output");
    let socket = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("driver did not get ready: {line:?}"))
        .trim()
        .to_owned();
    // The socket id names its node: drain that one.
    let (tag, ..) = shards::pusher::names::parse_socket_id(&socket).expect("socket id");
    let tag_of = |n: &Node| shards::pusher::names::node_tag(&n.node_id);
    let (drained, other) = if tag == tag_of(&a) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(tag, tag_of(drained), "the socket is on neither node");
    drained.sigterm();
    let mut rest = String::new();
    let _ = lines.read_to_string(&mut rest);
    let status = child.wait().expect("driver exit");
    let mut err = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    assert!(
        status.success(),
        "driver failed ({status}):\n{rest}\n{err}\n{}",
        lb.log_text()
    );
    let moved = rest
        .lines()
        .find_map(|l| l.strip_prefix("ok drain_reconnect "))
        .unwrap_or_else(|| panic!("no ok line:\n{rest}"));
    let to = moved
        .split_whitespace()
        .find_map(|w| w.strip_prefix("to="))
        .expect("to=");
    let (new_tag, ..) = shards::pusher::names::parse_socket_id(to).expect("new socket id");
    assert_eq!(
        new_tag,
        tag_of(other),
        "pusher-js came back on the draining node: {moved}"
    );
}
