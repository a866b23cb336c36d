//! The paced drain (docs/CONFIGURATION.md `[shutdown]`): 2,000 connections, SIGTERM. Readiness turns 503
//! at once while liveness stays 200; the closes start after the load balancer delay; every client gets
//! 1012 with a `{"reconnect_after_ms":N}` reason; no interval sees more than the configured batch (with
//! a tolerance for when the client happens to read); the process exits 0 before the window's end.
//! `POST /v1/drain` starts the same drain.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Node, NodeOpts};
use serde_json::Value;
use tungstenite::Message;

const N: usize = 2000;
const BATCH: usize = 100;
const INTERVAL_MS: u64 = 100;
const DELAY_MS: u64 = 300;
const WINDOW_MS: u64 = 10_000;

fn draining_node() -> Node {
    Node::start(
        NodeOpts::new()
            .shards(2)
            .set("limits.rate_limit_per_sec", 0)
            .set("heartbeat.interval_ms", 60_000)
            .set("heartbeat.timeout_ms", 120_000)
            .set("shutdown.drain_delay_ms", DELAY_MS)
            .set("shutdown.drain_window_ms", WINDOW_MS)
            .set("shutdown.drain_interval_ms", INTERVAL_MS)
            .set("shutdown.drain_batch", BATCH),
    )
}

/// One client's end: when (since the drain began) it read its Close frame, with code and reason.
struct Closed {
    at: Duration,
    code: u16,
    reason: String,
}

/// Reads every client without blocking until each has its Close frame (or `limit` passes); checks that
/// liveness stays 200 meanwhile.
fn collect_closes(
    node: &Node,
    clients: &mut [Client],
    start: Instant,
    limit: Duration,
) -> Vec<Closed> {
    for c in clients.iter_mut() {
        c.ws.get_mut().set_nonblocking(true).unwrap();
    }
    let mut closed: Vec<Option<Closed>> = (0..clients.len()).map(|_| None).collect();
    let mut left = clients.len();
    let mut last_health = Instant::now();
    while left > 0 {
        assert!(
            start.elapsed() < limit,
            "{left} clients still open after {limit:?}"
        );
        for (i, c) in clients.iter_mut().enumerate() {
            if closed[i].is_some() {
                continue;
            }
            match c.ws.read() {
                Ok(Message::Close(frame)) => {
                    let _ = c.ws.flush();
                    let frame = frame.expect("a close frame with a code");
                    closed[i] = Some(Closed {
                        at: start.elapsed(),
                        code: u16::from(frame.code),
                        reason: frame.reason.as_str().to_string(),
                    });
                    left -= 1;
                }
                Ok(other) => panic!("client {i}: unexpected {other:?} during the drain"),
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("client {i}: {e} before any Close frame (a bare TCP close?)"),
            }
        }
        if last_health.elapsed() > Duration::from_millis(200) {
            if let Ok((status, _)) = node.try_http_get("/healthz") {
                assert_eq!(status, 200, "liveness must stay 200 while draining");
            }
            last_health = Instant::now();
        }
    }
    closed.into_iter().map(Option::unwrap).collect()
}

#[test]
fn two_thousand_connections_are_closed_in_paced_batches_with_1012() {
    let mut node = draining_node();
    let mut clients: Vec<Client> = (0..N).map(|i| node.identified(&format!("d{i}"))).collect();
    assert_eq!(node.http_get("/readyz").0, 200);

    let start = Instant::now();
    node.sigterm();
    // Readiness flips at once (well within 1 s); liveness stays.
    let flipped = loop {
        if node.http_get("/readyz").0 == 503 {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "/readyz still 200 after 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(node.http_get("/healthz").0, 200);

    let mut closes = collect_closes(&node, &mut clients, start, Duration::from_secs(30));
    let status = node.wait_exit(Duration::from_secs(30));
    let exited = start.elapsed();
    assert!(status.success(), "exit status after the drain: {status}");
    assert!(
        exited < Duration::from_millis(DELAY_MS + WINDOW_MS),
        "the drain should end once empty, before its window: exited after {exited:?}"
    );

    for c in &closes {
        assert_eq!(c.code, 1012, "reason {:?}", c.reason);
        let reason: Value = serde_json::from_str(&c.reason).expect("the reason is JSON");
        assert!(
            reason["reconnect_after_ms"].as_u64().unwrap() <= 5000,
            "{reason}"
        );
    }
    closes.sort_by_key(|c| c.at);
    let first = closes[0].at;
    let last = closes[N - 1].at;
    // Nothing closes before the load balancer delay.
    assert!(
        first >= Duration::from_millis(DELAY_MS),
        "first close at {first:?}, before the {DELAY_MS} ms delay"
    );
    // Spread: N / BATCH batches, at least INTERVAL_MS apart.
    let spread = last - first;
    let batches = (N / BATCH) as u64;
    assert!(
        spread >= Duration::from_millis((batches - 2) * INTERVAL_MS),
        "{N} closes within {spread:?}: not paced"
    );
    // No interval sees more than the batch, by the node's own record of its batches (a client's read
    // time adds its own delay, so the node's log is the exact measure): every window of one interval
    // holds at most BATCH closes over all shards.
    let batches_logged = logged_batches(&node.stderr_tail(usize::MAX));
    let logged: usize = batches_logged.iter().map(|b| b.1).sum();
    assert_eq!(logged, N, "the batches logged close every connection");
    let mut worst = 0;
    for (i, &(at, _)) in batches_logged.iter().enumerate() {
        let within: usize = batches_logged[i..]
            .iter()
            .take_while(|(t, _)| *t < at + INTERVAL_MS as f64 / 1000.0)
            .map(|(_, n)| n)
            .sum();
        worst = worst.max(within);
    }
    assert!(
        worst <= BATCH,
        "{worst} closes within one {INTERVAL_MS} ms interval (batch {BATCH}): {batches_logged:?}"
    );
    let hints: Vec<u64> = closes
        .iter()
        .map(|c| {
            serde_json::from_str::<Value>(&c.reason).unwrap()["reconnect_after_ms"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let distinct: std::collections::BTreeSet<_> = hints.iter().collect();
    assert!(
        distinct.len() > 100,
        "reconnect hints are jittered: {} distinct",
        distinct.len()
    );
    println!(
        "readiness off after {flipped:?}; closes from {first:?} to {last:?} ({spread:?}); \
         at most {worst} in any {INTERVAL_MS} ms; exit after {exited:?}"
    );
}

/// The node's "drain batch" log lines: (seconds of the day, connections closed), in time order.
fn logged_batches(log: &str) -> Vec<(f64, usize)> {
    let mut out: Vec<(f64, usize)> = log
        .lines()
        .filter(|l| l.contains("drain batch"))
        .filter_map(|l| {
            // 2026-11-21T09:09:43.106550Z  INFO shards::drain: drain batch shard=0 closed=125
            let time = l.split('T').nth(1)?.split('Z').next()?;
            let mut hms = time.split(':');
            let h: f64 = hms.next()?.parse().ok()?;
            let m: f64 = hms.next()?.parse().ok()?;
            let s: f64 = hms.next()?.parse().ok()?;
            let closed = l
                .split("closed=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((h * 3600.0 + m * 60.0 + s, closed))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

#[test]
fn post_drain_starts_the_same_drain() {
    let mut node = Node::start(NodeOpts::new().shards(2));
    let mut clients: Vec<Client> = (0..5).map(|i| node.identified(&format!("p{i}"))).collect();
    let (status, answer) = node.api(None, "POST", "/v1/drain", &Value::Null);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["draining"], true);
    assert_eq!(node.http_get("/readyz").0, 503);
    for c in &mut clients {
        c.expect_close(1012);
    }
    assert!(node.wait_exit(Duration::from_secs(15)).success());
}

#[test]
fn a_second_signal_ends_the_drain_at_once() {
    let mut node = Node::start(
        NodeOpts::new()
            .shards(2)
            .set("shutdown.drain_delay_ms", 100)
            .set("shutdown.drain_window_ms", 60_000)
            .set("shutdown.drain_interval_ms", 1_000)
            .set("shutdown.drain_batch", 1),
    );
    let mut clients: Vec<Client> = (0..20).map(|i| node.identified(&format!("s{i}"))).collect();
    node.sigterm();
    // The drain is under way: one connection per second would take 20 s.
    std::thread::sleep(Duration::from_millis(500));
    let cut = Instant::now();
    node.sigterm();
    let mut codes = std::collections::BTreeMap::new();
    for c in &mut clients {
        c.send_json(&serde_json::json!({"op": "ping", "id": "p"}));
        loop {
            match c.try_recv() {
                Ok(common::Incoming::Close(code)) => {
                    *codes.entry(code).or_insert(0) += 1;
                    break;
                }
                Ok(_) => continue,
                Err(e) => panic!("{e} instead of a close frame"),
            }
        }
    }
    let status = node.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    assert!(
        cut.elapsed() < Duration::from_secs(10),
        "the second signal must not wait for the 60 s window: {:?}",
        cut.elapsed()
    );
    // At most the first batches got 1012; the rest were closed at once with 1001.
    assert!(
        codes.get(&Some(1001)).copied().unwrap_or(0) >= 15,
        "{codes:?}"
    );
    assert_eq!(codes.values().sum::<i32>(), 20, "{codes:?}");
}
