//! Chaos: direct-message load between users on two nodes, then a node SIGKILLed (10 rounds in a row)
//! or Redis restarted empty, with clients that reconnect and resume as docs/GUARANTEES.md tells them
//! to. Every message a sender got `delivered` or `stored` for must reach its recipient exactly once
//! after the recipient drops duplicates by `seq`; a loss is acceptable only when `ready` reported it
//! (`resumed:false`). Half the recipients read slower than their senders send, so acked messages sit
//! unread in the dying node's queues. Each round prints the messages in flight at the kill (acked, not
//! yet read) and the duplicates filtered.

mod common;

use std::{
    thread,
    time::{Duration, Instant},
};

use common::load::{connect, round};
use common::redis::RedisServer;
use common::{Node, NodeOpts};
use serde_json::json;

/// Rounds of the kill test.
const ROUNDS: usize = 10;

fn opts(redis: &RedisServer) -> NodeOpts {
    NodeOpts::new()
        .shards(2)
        .cluster(&redis.url())
        .set("limits.rate_limit_per_sec", 0)
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
