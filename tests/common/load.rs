//! Direct-message load between users on two nodes with clients that behave as docs/GUARANTEES.md
//! tells them to (remember `epoch`/`seq`, drop duplicates by `seq`, resume on a lost connection or a
//! skipped `seq`), and a fault in the middle of it ([`round`]). Afterwards, once each recipient has
//! resumed one last time (as at its next reconnect), every message a sender got `delivered` or
//! `stored` for must have reached its recipient exactly once, unless a resume reported a gap (which
//! the round returns for the test to judge). Used by the chaos test (a node or Redis fails)
//! and the Sentinel test (the Redis master fails over).

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

use super::{Client, Incoming};
use serde_json::{Value, json};

/// Pairs per direction: senders on one node, their recipients on the other.
pub const PAIRS: usize = 8;
/// Load before the kill and after it.
pub const LOAD: Duration = Duration::from_millis(1_200);
/// Bound for the receivers to catch up once the senders stop (half of them read slowly).
pub const CATCH_UP: Duration = Duration::from_secs(30);
/// Catching up ends early when no message has arrived for this long.
const QUIET: Duration = Duration::from_secs(3);

/// Connects to the first address of `addrs` that answers (a killed node refuses), identifying as
/// `user`, resuming from `from` when given.
pub fn connect(addrs: &[SocketAddr], user: &str, from: Option<(&str, u64)>) -> (Client, Value) {
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
    /// Resumes answered `unavailable`, and so made again.
    unavailable: u64,
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
    let mut resumed_at_stop = false;
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
                if !stop.load(Ordering::Acquire) {
                    false
                } else if resumed_at_stop {
                    return seen;
                } else {
                    // The load is over: resume once, as a client does at its next reconnect. A
                    // message kept but not delivered live (`stored` while this node's Redis session
                    // was being restored) that no later message revealed as a hole comes now.
                    resumed_at_stop = true;
                    true
                }
            }
            Ok(Incoming::Close(_)) | Err(_) => true,
        };
        if lost_connection {
            let from = Some((epoch.as_str(), last));
            let (mut again, mut ready) = connect(&addrs.lock().unwrap().clone(), &user, from);
            // `unavailable`: the history could not be read (Redis unreachable, a failover under
            // way); docs/GUARANTEES.md says to resume again later, which this client does until
            // the answer is definite (bounded by the catch-up time).
            let deadline = Instant::now() + CATCH_UP;
            while ready["reason"] == "unavailable" && Instant::now() < deadline {
                seen.unavailable += 1;
                drop(again);
                thread::sleep(Duration::from_millis(200));
                (again, ready) = connect(&addrs.lock().unwrap().clone(), &user, from);
            }
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
pub struct Round {
    /// Acked but not yet received when the fault struck.
    pub in_flight: u64,
    /// Duplicates the recipients dropped by seq.
    pub duplicates: u64,
    /// Messages replayed by resumes.
    pub replayed: u64,
    /// Gaps reported by resumes.
    pub gaps: Vec<String>,
    /// Resumes made because a live message skipped a `seq`.
    pub gap_resumes: u64,
    /// Resumes answered `unavailable` (made again until definite).
    pub unavailable: u64,
    /// Messages acked `delivered` or `stored`.
    pub acked: usize,
}

impl Round {
    /// After a failover: no resume reported a gap (so no acked message was lost, which [`round`]
    /// checked), and the load did get acks.
    pub fn check_failover(&self) {
        assert!(
            self.gaps.is_empty(),
            "a resume reported a gap after the failover: {:?}",
            self.gaps
        );
        assert!(self.acked > 0, "no message was acked");
    }

    /// The round's figures, for a test's report line.
    pub fn summary(&self) -> String {
        format!(
            "acked {}, in flight at the fault {}, replayed {}, duplicates filtered {}, resumes on a skipped seq {}, \
             resumes answered unavailable (and made again) {}, acked but lost 0",
            self.acked,
            self.in_flight,
            self.replayed,
            self.duplicates,
            self.gap_resumes,
            self.unavailable
        )
    }
}

/// Load between the nodes at `a` and `b`: PAIRS senders on each node, each to a recipient on the
/// other. `fault` runs after LOAD and says where clients go from then on; the load goes on for LOAD
/// more, then every acked message must arrive (unless a resume reported a gap).
pub fn round(a: SocketAddr, b: SocketAddr, fault: impl FnOnce() -> Vec<SocketAddr>) -> Round {
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
    // Let the recipients catch up (replays included) until every acked message is in or nothing has
    // come for a while, then stop them (each resumes once more before it returns).
    let deadline = Instant::now() + CATCH_UP;
    let (mut received, mut moved) = (0, Instant::now());
    while totals.received.load(Ordering::Relaxed) < acked.len() as u64 && Instant::now() < deadline
    {
        let now = totals.received.load(Ordering::Relaxed);
        if now != received {
            (received, moved) = (now, Instant::now());
        } else if moved.elapsed() > QUIET {
            break;
        }
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
        unavailable: seen.iter().map(|s| s.unavailable).sum(),
        gaps,
        acked: acked.len(),
    }
}
