//! Abuse: ping floods. Pings past `limits.max_pings_per_sec` close the connection with 1008 ("too many
//! pings", metric reason `ping_flood`) instead of being answered one pong each; a client pinging every
//! few hundred milliseconds is never affected. With the limit off, a client that floods pings and never
//! reads cannot grow its outbound queue past `limits.outbound_queue_bytes`: it is closed with 4008. The
//! node's memory stays bounded either way.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::raw::{FIN, PING, PONG, RawWs, assert_rss_within, frame, mib};
use common::{Node, NodeOpts};

#[test]
fn a_ping_flood_is_closed_with_1008_and_a_steady_pinger_is_not() {
    let node = Node::start(NodeOpts::new().shards(2));
    let baseline = node.rss_bytes();

    // A steady client: a ping every 150 ms for 3 s (under 7 per second) gets every pong.
    let mut steady = RawWs::connect(node.ws_addr);
    steady.identify("steady");
    for i in 0..20u8 {
        steady.send_frame(FIN | PING, &[i]).expect("ping");
        let f = steady.read_frame().expect("pong");
        assert_eq!(
            (f.opcode, f.payload.as_slice()),
            (PONG, &[i][..]),
            "pong {i}"
        );
        thread::sleep(Duration::from_millis(150));
    }
    steady.ping_pong("steady-open");

    // A flood: 1,000 pings in one write. At most a second's worth (10; 20 if the flood straddles a
    // second of the server's clock) is answered, then close 1008.
    let mut flood = RawWs::connect(node.ws_addr);
    flood.identify("flood");
    let burst: Vec<u8> = (0..1000)
        .flat_map(|_| frame(FIN | PING, b"0123456789"))
        .collect();
    flood.send_raw(&burst).expect("send the flood");
    let (code, reason, before) = flood.expect_close();
    assert_eq!((code, reason.as_str()), (1008, "too many pings"));
    assert!(before <= 20, "{before} pongs answered before the close");
    assert!(
        flood.closed_within(Duration::from_secs(10)),
        "TCP still open after the 1008"
    );
    // Anonymous connections are limited the same way.
    let mut anon = RawWs::connect(node.ws_addr);
    anon.send_raw(&burst).expect("send the flood");
    assert_eq!(anon.expect_close_code(1008), "too many pings");
    // The server counts each close once its client is gone.
    drop((flood, anon));

    let flooded = node.wait_metric(
        "gateway_connections_closed_total",
        &[("reason", "ping_flood")],
        2.0,
        Duration::from_secs(5),
    );
    assert_eq!(flooded, 2.0, "ping_flood closes counted");
    steady.ping_pong("steady-still-open");

    // Many flooders in a row: memory stays where it was.
    for _ in 0..200 {
        let mut f = RawWs::connect(node.ws_addr);
        f.send_raw(&burst).expect("send the flood");
        f.expect_close_code(1008);
    }
    let after = node.rss_bytes();
    assert_rss_within(
        "ping flood, after 200 flooders of 1,000 pings",
        baseline,
        after,
        16,
    );
}

#[test]
fn a_flooder_that_never_reads_hits_the_outbound_bound() {
    const QUEUE: usize = 64 * 1024;
    let node = Node::start(
        NodeOpts::new()
            .set("limits.max_pings_per_sec", 0)
            .set("limits.outbound_queue_bytes", QUEUE)
            .set("shutdown.close_grace_ms", 30_000),
    );
    let baseline = node.rss_bytes();
    let mut ws = RawWs::connect(node.ws_addr);
    ws.identify("never-reads");
    // 125-byte pings, never reading: the pongs queue up (one poll reads up to 4 × 64 KiB of pings, so
    // the queue may pass its bound before anything is written) and the connection is closed with 4008.
    let ping = frame(FIN | PING, &[7u8; 125]);
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 4096)
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = ws.stream.try_clone().expect("clone");
    let sender = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) && sent < 1 << 30 {
                if writer.write_all(&batch).is_err() {
                    break;
                }
                sent += batch.len();
            }
            sent
        })
    };
    let closed = node.wait_metric(
        "gateway_slow_consumer_closes_total",
        &[],
        1.0,
        Duration::from_secs(60),
    );
    let peak = node.rss_bytes();
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    assert_eq!(closed, 1.0, "no 4008 after {} of pings", mib(sent as u64));
    // Now read: the pongs already on their way, then the close.
    let (code, reason, pongs) = ws.expect_close();
    assert_eq!(
        (code, reason.as_str()),
        (4008, "slow consumer"),
        "after {pongs} pongs"
    );
    eprintln!(
        "ping flood, never reading: {} of pings sent, {pongs} pongs read before 4008, RSS baseline {}, peak {}",
        mib(sent as u64),
        mib(baseline),
        mib(peak)
    );
    // The queue holds at most 64 KiB; the bound leaves room for the shard's buffers and the allocator.
    assert!(
        peak <= baseline + 16 * 1024 * 1024,
        "RSS grew from {} to {}",
        mib(baseline),
        mib(peak)
    );
    drop(ws);
    let open = node.wait_metric(
        "gateway_connections_open",
        &[],
        0.0,
        Duration::from_secs(10),
    );
    assert_eq!(open, 0.0);
}
