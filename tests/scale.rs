//! Scale and capacity: 5,000 concurrent identified connections on two shards each receiving exactly one
//! direct message, and a node under a 256 open-file limit that must shed load with 1013 (or refuse at
//! the TCP level) instead of breaking.

mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Incoming, Node, NodeOpts};
use serde_json::json;

#[test]
fn five_thousand_connections_each_get_one_direct_message() {
    const N: usize = 5000;
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .set("limits.rate_limit_per_sec", 0)
            .set("heartbeat.interval_ms", 60000)
            .set("heartbeat.timeout_ms", 120000),
    );
    assert!(
        node.max_connections as usize > N,
        "environment: max_connections={} (nofile={}) is too low for {N} connections; raise `ulimit -n`",
        node.max_connections,
        node.nofile
    );

    let mut users = Vec::with_capacity(N);
    let mut shards = BTreeSet::new();
    for i in 0..N {
        let mut c = node.client();
        let ready = c.identify(&format!("u{i}"));
        shards.insert(ready["shard"].as_u64().expect("shard"));
        users.push(c);
    }
    assert_eq!(shards, BTreeSet::from([0, 1]), "connections on both shards");

    let mut sender = node.identified("sender");
    let open = node.metric_sum("gateway_connections_open", &[]);
    assert_eq!(open, (N + 1) as f64, "gateway_connections_open");

    for i in 0..N {
        let id = format!("m{i}");
        let ack = sender
            .request(json!({"op": "send", "id": id, "to": format!("u{i}"), "data": {"i": i}}));
        assert_eq!(
            ack,
            json!({"op": "ack", "id": id, "status": "delivered", "conns": 1}),
            "send to u{i}"
        );
    }
    for (i, c) in users.iter_mut().enumerate() {
        let msg = c.recv_json();
        assert_eq!(
            msg,
            json!({"op": "message", "from": "sender", "data": {"i": i}}),
            "u{i}"
        );
        c.send_json(&json!({"op": "ping", "id": format!("after{i}")}));
    }
    for (i, c) in users.iter_mut().enumerate() {
        assert_eq!(
            c.recv_json(),
            json!({"op": "pong", "id": format!("after{i}")}),
            "u{i}: duplicate or extra frame before the pong"
        );
    }
    sender.ping_pong("sender-done");
}

/// How one connection attempt against a full node ended.
enum Outcome {
    Ready(Box<Client>),
    OverCapacity,
    Refused(String),
    Bad(String),
}

fn attempt(node: &Node, user: &str) -> Outcome {
    let mut c = match Client::try_connect(node.ws_addr, "/", Duration::from_secs(3)) {
        Ok(c) => c,
        Err(e) if e.contains("timed out") => return Outcome::Bad(format!("upgrade hung: {e}")),
        Err(e) => return Outcome::Refused(e),
    };
    // The server may already have sent 1013; a failed write is fine as long as the Close frame is readable.
    let _ = c.try_send(tungstenite::Message::text(
        json!({"op": "identify", "id": "ident", "user": user}).to_string(),
    ));
    match c.try_recv() {
        Ok(Incoming::Json(v)) if v["op"] == "ready" => Outcome::Ready(Box::new(c)),
        Ok(Incoming::Json(v)) => Outcome::Bad(format!("unexpected reply {v}")),
        Ok(Incoming::Close(Some(1013))) => Outcome::OverCapacity,
        Ok(Incoming::Close(code)) => Outcome::Bad(format!("closed with {code:?} instead of 1013")),
        Err(e) => Outcome::Bad(format!("after the upgrade: {e}")),
    }
}

#[test]
fn node_under_low_nofile_limit_sheds_load_and_recovers() {
    const ATTEMPTS: usize = 400;
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .nofile(256, 256)
            .set("limits.rate_limit_per_sec", 0),
    );
    assert_eq!(node.nofile, 256, "{}", node.listening_line);
    assert!(
        node.max_connections < 256,
        "max_connections must be derived from nofile=256: {}",
        node.listening_line
    );

    let mut ready = Vec::new();
    let mut over_capacity = 0usize;
    let mut refused = Vec::new();
    let mut bad = Vec::new();
    for i in 0..ATTEMPTS {
        match attempt(&node, &format!("cap{i}")) {
            Outcome::Ready(c) => ready.push(c),
            Outcome::OverCapacity => over_capacity += 1,
            Outcome::Refused(e) => refused.push(format!("#{i}: {e}")),
            Outcome::Bad(e) => {
                bad.push(format!("#{i}: {e}"));
                if bad.len() >= 5 {
                    break;
                }
            }
        }
    }
    eprintln!(
        "{}: ready {}, 1013 {over_capacity}, refused {}, bad {}",
        node.listening_line,
        ready.len(),
        refused.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "attempts that were neither ready, 1013 nor refused: {bad:#?} (ready {}, 1013 {over_capacity})",
        ready.len()
    );
    assert!(
        ready.len() >= 100,
        "only {} connections became ready (max_connections {})",
        ready.len(),
        node.max_connections
    );
    assert!(
        over_capacity + refused.len() >= 1,
        "all {ATTEMPTS} connections were accepted with nofile=256"
    );
    assert!(
        ready.len() as u64 <= node.max_connections,
        "{} ready connections exceed max_connections {}",
        ready.len(),
        node.max_connections
    );

    let (status, body) = node.http_get("/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    for (i, c) in ready.iter_mut().enumerate().step_by(25) {
        c.ping_pong(&format!("alive{i}"));
    }

    drop(ready);
    // The server notices the closed sockets asynchronously: poll (bounded) until a new client identifies.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match attempt(&node, "after") {
            Outcome::Ready(mut c) => {
                c.ping_pong("after");
                break;
            }
            Outcome::OverCapacity | Outcome::Refused(_) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(50));
            }
            Outcome::OverCapacity => panic!("still over capacity 10 s after all clients closed"),
            Outcome::Refused(e) => panic!("still refusing 10 s after all clients closed: {e}"),
            Outcome::Bad(e) => panic!("new client after closing all: {e}"),
        }
    }
    let (status, _) = node.http_get("/healthz");
    assert_eq!(status, 200);
}
