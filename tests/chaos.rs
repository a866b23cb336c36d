//! Chaos: direct-message load between users on two nodes, then a node SIGKILLed (10 rounds in a row)
//! or Redis restarted empty, with clients that reconnect and resume as docs/GUARANTEES.md tells them
//! to. Every message a sender got `delivered` or `stored` for must reach its recipient exactly once
//! after the recipient drops duplicates by `seq`; a loss is acceptable only when `ready` reported it
//! (`resumed:false`). Half the recipients read slower than their senders send, so acked messages sit
//! unread in the dying node's queues. Each round prints the messages in flight at the kill (acked, not
//! yet read) and the duplicates filtered.

mod common;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use common::redis::RedisServer;
use common::{Client, Incoming, Node, NodeOpts};
use serde_json::{Value, json};

/// Pairs per direction: senders on one node, their recipients on the other.
const PAIRS: usize = 8;
/// Rounds of the kill test.
const ROUNDS: usize = 10;
/// Load before the kill and after it.
const LOAD: Duration = Duration::from_millis(1_200);
/// Bound for the receivers to catch up once the senders stop (half of them read slowly).
const CATCH_UP: Duration = Duration::from_secs(30);

fn opts(redis: &RedisServer) -> NodeOpts {
    NodeOpts::new()
        .shards(2)
        .cluster(&redis.url())
        .set("limits.rate_limit_per_sec", 0)
}

/// Connects to the first address of `addrs` that answers (a killed node refuses), identifying as
/// `user`, resuming from `from` when given.
fn connect(addrs: &[SocketAddr], user: &str, from: Option<(&str, u64)>) -> (Client, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for addr in addrs {
            let Ok(mut c) = Client::try_connect(*addr, "/", Duration::from_secs(5)) else {
                continue;
            };
            c.keep_seq();
            let mut identify = json!({"op": "identify", "id": "i", "user": user});
            identify["resume"] = match from {
                // No epoch known yet (the first resume answered `unavailable`): from the start.
                Some((epoch, seq)) if !epoch.is_empty() => json!({"epoch": epoch, "seq": seq}),
                _ => json!({}),
            };
            if c.try_send(tungstenite::Message::text(identify.to_string()))
                .is_err()
            {
                continue;
            }
            if let Ok(Incoming::Json(ready)) = c.try_recv() {
                assert_eq!(ready["op"], "ready", "{ready}");
                return (c, ready);
            }
        }
        assert!(Instant::now() < deadline, "no node accepted {user}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// What a recipient saw.
#[derive(Default)]
struct Seen {
    /// Message numbers received (after dropping duplicates by seq).
    got: HashSet<u64>,
    /// Numbers received twice although their seq was new (must stay empty).
    twice: Vec<u64>,
    /// Duplicates dropped by seq.
    duplicates: u64,
    /// Messages replayed by resumes.
    replayed: u64,
    /// Resumes that reported a gap: (reason, client position).
    gaps: Vec<String>,
    /// Resumes made because a live message skipped a `seq`.
    gap_resumes: u64,
}

/// Live totals across threads: acked by senders, received by recipients.
#[derive(Default)]
struct Totals {
    acked: AtomicU64,
    received: AtomicU64,
}

/// A recipient: reads until `stop`, as docs/GUARANTEES.md tells a client to: it remembers the last
/// `epoch`/`seq` it processed, drops duplicates by `seq`, resumes whenever its connection is lost, and
/// resumes too when a live message skips a `seq` (a message kept in history that its node did not
/// get live, e.g. while the node's Redis subscription was being restored).
fn recipient(
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
    user: String,
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
    slow: bool,
) -> Seen {
    let mut seen = Seen::default();
    let (mut c, ready) = connect(&addrs.lock().unwrap().clone(), &user, None);
    // The position is what this client processed: the replay after `ready` is still to be read.
    let mut epoch = ready["epoch"].as_str().unwrap_or_default().to_string();
    let mut last = 0u64;
    c.set_read_timeout(Duration::from_millis(100));
    loop {
        let lost_connection = match c.try_recv() {
            Ok(Incoming::Json(m)) if m["op"] == "message" => {
                let n = m["data"]["n"].as_u64().expect("n");
                let gap = match (m["epoch"].as_str(), m["seq"].as_u64()) {
                    (Some(e), Some(seq)) if e == epoch => {
                        if seq <= last {
                            seen.duplicates += 1;
                            continue;
                        }
                        seq > last + 1
                    }
                    // A new stream: the old one's tail may be lost (kept, not delivered live, then
                    // gone with Redis). Resuming from the old position asks the server, which
                    // reports it (`epoch_changed`) and replays the new stream.
                    (Some(_), Some(_)) => true,
                    _ => false, // unnumbered (Redis was down): delivered live, at most once
                };
                if gap {
                    seen.gap_resumes += 1;
                    true // resume from `last`: the skipped messages and this one come in the replay
                } else {
                    if let Some(seq) = m["seq"].as_u64() {
                        last = seq;
                    }
                    if slow {
                        // Reads slower than its sender sends: acked messages queue up unread, and
                        // are in flight when the node dies.
                        thread::sleep(Duration::from_millis(15));
                    }
                    if seen.got.insert(n) {
                        totals.received.fetch_add(1, Ordering::Relaxed);
                    } else {
                        seen.twice.push(n);
                    }
                    false
                }
            }
            Ok(Incoming::Json(other)) => panic!("{user}: unexpected frame {other}"),
            Err(e) if e.starts_with("timed out") => {
                if stop.load(Ordering::Acquire) {
                    return seen;
                }
                false
            }
            Ok(Incoming::Close(_)) | Err(_) => true,
        };
        if lost_connection {
            let from = Some((epoch.as_str(), last));
            let (again, ready) = connect(&addrs.lock().unwrap().clone(), &user, from);
            c = again;
            c.set_read_timeout(Duration::from_millis(100));
            seen.replayed += ready["replayed"].as_u64().unwrap_or(0);
            if ready["resumed"] != true {
                seen.gaps
                    .push(format!("{} at {epoch}/{last}", ready["reason"]));
            }
            if let Some(e) = ready["epoch"].as_str()
                && e != epoch
            {
                // A new stream: what the replay carries is all new to this client.
                epoch = e.to_string();
                last = 0;
            }
        }
    }
}

/// A sender: sends numbered messages one at a time until `stop`, reconnecting when its node dies;
/// returns the numbers acked `delivered` or `stored`, and the other acks by status.
fn sender(
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
    user: String,
    to: String,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicU64>,
    totals: Arc<Totals>,
) -> (Vec<u64>, HashMap<String, u64>) {
    let mut acked = Vec::new();
    let mut other: HashMap<String, u64> = HashMap::new();
    let (mut c, _) = connect(&addrs.lock().unwrap().clone(), &user, None);
    while !stop.load(Ordering::Acquire) {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let msg = json!({"op": "send", "id": n.to_string(), "to": to, "data": {"n": n}});
        let sent = c.try_send(tungstenite::Message::text(msg.to_string()));
        let ack = match sent.and_then(|()| c.try_recv()) {
            Ok(Incoming::Json(ack)) => ack,
            _ => {
                // The node died with this message in flight: unknown outcome, not counted.
                *other.entry("lost_connection".into()).or_default() += 1;
                c = connect(&addrs.lock().unwrap().clone(), &user, None).0;
                continue;
            }
        };
        assert_eq!(ack["id"], n.to_string(), "{ack}");
        match ack["status"].as_str() {
            Some("delivered") | Some("stored") => {
                totals.acked.fetch_add(1, Ordering::Relaxed);
                acked.push(n);
            }
            Some(s) => *other.entry(s.to_string()).or_default() += 1,
            None => panic!("{user}: not an ack: {ack}"),
        }
        thread::sleep(Duration::from_millis(2));
    }
    (acked, other)
}

/// What a round measured.
struct Round {
    /// Acked but not yet received when the fault struck.
    in_flight: u64,
    /// Duplicates the recipients dropped by seq.
    duplicates: u64,
    /// Messages replayed by resumes.
    replayed: u64,
    /// Gaps reported by resumes.
    gaps: Vec<String>,
    /// Resumes made because a live message skipped a `seq`.
    gap_resumes: u64,
    /// Messages acked `delivered` or `stored`.
    acked: usize,
}

/// Load between the nodes at `a` and `b`: PAIRS senders on each node, each to a recipient on the
/// other. `fault` runs after LOAD and says where clients go from then on; the load goes on for LOAD
/// more, then every acked message must arrive (unless a resume reported a gap).
fn round(a: SocketAddr, b: SocketAddr, fault: impl FnOnce() -> Vec<SocketAddr>) -> Round {
    // Names unique to the round: a user's stream outlives its round in Redis.
    static ROUND: AtomicU64 = AtomicU64::new(0);
    let r = ROUND.fetch_add(1, Ordering::Relaxed);
    let on_a = Arc::new(Mutex::new(vec![a, b]));
    let on_b = Arc::new(Mutex::new(vec![b, a]));
    let stop_send = Arc::new(AtomicBool::new(false));
    let stop_recv = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let totals = Arc::new(Totals::default());
    let mut recipients = Vec::new();
    let mut senders = Vec::new();
    for i in 0..PAIRS {
        for (side, other, tag) in [(&on_a, &on_b, "a"), (&on_b, &on_a, "b")] {
            let user = format!("r{r}{tag}{i}");
            let (addrs, stop, t) = (side.clone(), stop_recv.clone(), totals.clone());
            let u = user.clone();
            let slow = i % 2 == 0;
            recipients.push(thread::spawn(move || recipient(addrs, u, stop, t, slow)));
            let (addrs, stop, next, t) = (
                other.clone(),
                stop_send.clone(),
                next.clone(),
                totals.clone(),
            );
            senders.push(thread::spawn(move || {
                sender(addrs, format!("s{r}{tag}{i}"), user, stop, next, t)
            }));
        }
    }
    thread::sleep(LOAD);
    let in_flight = totals
        .acked
        .load(Ordering::Relaxed)
        .saturating_sub(totals.received.load(Ordering::Relaxed));
    let survivors = fault();
    *on_a.lock().unwrap() = survivors.clone();
    *on_b.lock().unwrap() = survivors;
    thread::sleep(LOAD);
    stop_send.store(true, Ordering::Release);
    let results: Vec<(Vec<u64>, HashMap<String, u64>)> =
        senders.into_iter().map(|s| s.join().unwrap()).collect();
    let acked: HashSet<u64> = results
        .iter()
        .flat_map(|(a, _)| a.iter().copied())
        .collect();
    // Let the recipients catch up (replays included), then stop them.
    let deadline = Instant::now() + CATCH_UP;
    while totals.received.load(Ordering::Relaxed) < acked.len() as u64 && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    stop_recv.store(true, Ordering::Release);
    let seen: Vec<Seen> = recipients.into_iter().map(|r| r.join().unwrap()).collect();
    let got: HashSet<u64> = seen.iter().flat_map(|s| s.got.iter().copied()).collect();
    let twice: Vec<u64> = seen.iter().flat_map(|s| s.twice.iter().copied()).collect();
    assert!(
        twice.is_empty(),
        "received twice under distinct seqs: {twice:?}"
    );
    let gaps: Vec<String> = seen.iter().flat_map(|s| s.gaps.clone()).collect();
    let mut lost: Vec<u64> = acked.difference(&got).copied().collect();
    lost.sort_unstable();
    if gaps.is_empty() {
        assert!(
            lost.is_empty(),
            "{} acked messages never arrived: {:?}",
            lost.len(),
            &lost[..lost.len().min(20)]
        );
    }
    let others: HashMap<String, u64> = results.iter().fold(HashMap::new(), |mut m, (_, o)| {
        for (k, v) in o {
            *m.entry(k.clone()).or_default() += v;
        }
        m
    });
    eprintln!(
        "acked {}, received {}, acked but lost {} (gaps reported: {gaps:?}), other outcomes {others:?}",
        acked.len(),
        got.len(),
        lost.len()
    );
    Round {
        in_flight,
        duplicates: seen.iter().map(|s| s.duplicates).sum(),
        replayed: seen.iter().map(|s| s.replayed).sum(),
        gap_resumes: seen.iter().map(|s| s.gap_resumes).sum(),
        gaps,
        acked: acked.len(),
    }
}

#[test]
fn sigkill_a_node_under_load_ten_times() {
    let redis = RedisServer::start();
    let (mut in_flight, mut duplicates, mut replayed, mut acked) = (0, 0, 0, 0);
    for i in 0..ROUNDS {
        let mut a = Node::start(opts(&redis));
        let b = Node::start(opts(&redis));
        let r = round(a.ws_addr, b.ws_addr, || {
            a.sigkill();
            vec![b.ws_addr]
        });
        assert!(
            r.gaps.is_empty(),
            "round {i}: a resume reported a gap: {:?}",
            r.gaps
        );
        eprintln!(
            "round {i}: acked {}, in flight at the kill {}, replayed {}, duplicates filtered {}, resumes on a skipped seq {}",
            r.acked, r.in_flight, r.replayed, r.duplicates, r.gap_resumes
        );
        in_flight += r.in_flight;
        duplicates += r.duplicates;
        replayed += r.replayed;
        acked += r.acked;
    }
    eprintln!(
        "CHAOS {ROUNDS} rounds, 0 acked-but-lost: acked {acked}, in flight at the kills {in_flight}, replayed {replayed}, duplicates filtered {duplicates}"
    );
}

#[test]
fn redis_restart_under_load_loses_nothing_silently() {
    let mut redis = RedisServer::start();
    let a = Node::start(opts(&redis));
    let b = Node::start(opts(&redis));
    // A user away during the restart, with messages kept for it before: its resume must report the
    // loss of the old stream.
    let (away, ready) = connect(&[a.ws_addr], "away", None);
    let old_epoch = ready["epoch"].as_str().unwrap().to_string();
    away.close();
    let mut s = b.identified("s-away");
    s.set_read_timeout(Duration::from_secs(5));
    let mut stored = 0;
    for n in 0..20 {
        let ack = s.request(json!({"op": "send", "id": "x", "to": "away", "data": {"n": n}}));
        if ack["status"] == "stored" {
            stored += 1;
        }
    }
    assert!(stored > 0, "no message was stored for the absent user");
    let r = round(a.ws_addr, b.ws_addr, || {
        redis.restart_empty();
        vec![a.ws_addr, b.ws_addr]
    });
    eprintln!(
        "redis restart: acked {}, in flight {}, replayed {}, duplicates filtered {}, resumes on a skipped seq {}, gaps {:?}",
        r.acked, r.in_flight, r.replayed, r.duplicates, r.gap_resumes, r.gaps
    );
    // The stored messages went with Redis: the resume says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_c, ready) = connect(&[a.ws_addr], "away", Some((&old_epoch, 0)));
        if ready["reason"] == "epoch_changed" {
            assert_eq!(ready["resumed"], false);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lost stream was not reported: {ready}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}
