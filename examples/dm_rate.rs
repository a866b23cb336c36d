//! Measures the rate of direct messages the gateway routes between two shards.
//!
//! Usage: `cargo run --release --example dm_rate -- <ws addr> <seconds> [pairs]`
//! Start the gateway with `--shards 2` and `GATEWAY_LIMITS_RATE_LIMIT_PER_SEC=0` (the per-connection
//! rate limit off). Opens `pairs` sender/receiver pairs whose ready frames report different shards, so
//! every message crosses shards (sender shard → owner shard → holder shard). Each sender pipelines
//! sends flat out with a bounded window of unacked messages; each receiver checks it gets every
//! message exactly once and in order. Prints messages/second delivered, and lost/duplicated counts.

use std::{
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tungstenite::{Message, WebSocket, client::client, stream::MaybeTlsStream};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Ops in flight per sender before it waits for acks.
const WINDOW: u64 = 256;

fn open(addr: SocketAddr, user: &str) -> (Ws, u64) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, _) = client(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(stream)).unwrap();
    ws.send(Message::text(format!(
        r#"{{"op":"identify","user":"{user}"}}"#
    )))
    .unwrap();
    loop {
        if let Message::Text(t) = ws.read().unwrap() {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            return (ws, v["shard"].as_u64().unwrap());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args.get(1).expect("ws addr").parse().unwrap();
    let secs: u64 = args.get(2).map_or(10, |s| s.parse().unwrap());
    let pairs: usize = args.get(3).map_or(2, |s| s.parse().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let mut senders = Vec::new();
    for p in 0..pairs {
        // Find a receiver on a shard other than the sender's.
        let (tx, tx_shard) = open(addr, &format!("dm-sender-{p}"));
        let (rx, rx_user) = (0..64)
            .map(|k| {
                let user = format!("dm-recv-{p}-{k}");
                let (ws, shard) = open(addr, &user);
                (ws, shard, user)
            })
            .find(|(_, shard, _)| *shard != tx_shard)
            .map(|(ws, _, user)| (ws, user))
            .expect("no receiver on another shard: is the gateway running with --shards 2?");
        let (stop2, delivered2) = (stop.clone(), delivered.clone());
        threads.push(std::thread::spawn(move || receive(rx, stop2, delivered2)));
        senders.push((tx, rx_user));
    }
    let start = Instant::now();
    let sent_total = Arc::new(AtomicU64::new(0));
    let send_threads: Vec<_> = senders
        .into_iter()
        .map(|(tx, to)| {
            let (stop, sent_total) = (stop.clone(), sent_total.clone());
            std::thread::spawn(move || send(tx, &to, stop, sent_total))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Release);
    let elapsed = start.elapsed().as_secs_f64();
    for t in send_threads {
        t.join().unwrap();
    }
    let mut lost = 0;
    let mut dup = 0;
    let sent = sent_total.load(Ordering::Acquire);
    for t in threads {
        let (l, d) = t.join().unwrap();
        lost += l;
        dup += d;
    }
    let got = delivered.load(Ordering::Acquire);
    println!(
        "pairs={pairs} seconds={elapsed:.1} sent={sent} delivered={got} rate={:.0} msg/s lost={lost} duplicated={dup}",
        got as f64 / elapsed
    );
}

/// Sends numbered messages until told to stop, keeping at most WINDOW unacked; ends with a marker.
fn send(mut ws: Ws, to: &str, stop: Arc<AtomicBool>, sent_total: Arc<AtomicU64>) {
    let mut seq = 0u64;
    let mut acked = 0u64;
    while !stop.load(Ordering::Acquire) {
        while seq - acked < WINDOW {
            let msg = format!(r#"{{"op":"send","to":"{to}","data":{seq}}}"#);
            ws.write(Message::text(msg)).unwrap();
            seq += 1;
        }
        ws.flush().unwrap();
        while seq - acked >= WINDOW / 2 {
            if let Message::Text(t) = ws.read().unwrap()
                && t.contains("\"ack\"")
            {
                acked += 1;
            }
        }
    }
    ws.send(Message::text(format!(
        r#"{{"op":"send","to":"{to}","data":"end:{seq}"}}"#
    )))
    .unwrap();
    sent_total.fetch_add(seq, Ordering::AcqRel);
}

/// Counts messages until the end marker; returns (lost, duplicated-or-out-of-order).
fn receive(mut ws: Ws, _stop: Arc<AtomicBool>, delivered: Arc<AtomicU64>) -> (u64, u64) {
    let mut next = 0u64;
    let mut bad = 0u64;
    loop {
        let Message::Text(t) = ws.read().unwrap() else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        match &v["data"] {
            serde_json::Value::Number(n) => {
                let n = n.as_u64().unwrap();
                if n == next {
                    next += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad += 1;
                }
            }
            serde_json::Value::String(s) => {
                let total: u64 = s.trim_start_matches("end:").parse().unwrap();
                return (total.saturating_sub(next), bad);
            }
            _ => {}
        }
    }
}
