//! No lost wake-up between a shard's own io_uring and glommio, on both read paths.
//!
//! A shard's driver task sleeps on the ring's eventfd whenever a pass finds nothing; frames queued by
//! another task (a delivery arriving from the other shard's inbox) go out through that task's own
//! pass. A lost wake-up shows as a message that never arrives. Two users on different shards send to
//! each other in bursts separated by silences (so both drivers go to sleep between rounds), thousands
//! of times, and every message, ack and pong must arrive, in order: on the multishot and poll read paths,
//! and on the ring setups older kernels fall back to.

mod common;

use std::time::Duration;

use common::{Client, Node, NodeOpts};
use serde_json::json;

/// Rounds of burst-then-silence.
const ROUNDS: usize = 2000;

/// Client `a` and another client on a different shard, with its user name.
fn one_per_shard(node: &Node) -> (Client, Client, String) {
    let mut a = node.client();
    let shard_a = a.identify("a")["shard"]
        .as_u64()
        .expect("shard is an integer");
    for i in 0..64 {
        let mut c = node.client();
        let user = format!("b{i}");
        let shard = c.identify(&user)["shard"]
            .as_u64()
            .expect("shard is an integer");
        if shard != shard_a {
            return (a, c, user);
        }
        c.close();
    }
    panic!("64 connections all landed on shard {shard_a}");
}

fn bursts_and_silence(recv: &str, ring_flags: &str) {
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .set_str("runtime.recv", recv)
            .set_str("runtime.ring_flags", ring_flags)
            .set("limits.rate_limit_per_sec", 1_000_000)
            .set("limits.rate_limit_burst", 1_000_000),
    );
    // Both shards run the setup asked for (this kernel has them all).
    let log = node.stderr_tail(64 * 1024);
    let flavor = match ring_flags {
        "defer" => "DeferTaskrun",
        "coop" => "CoopTaskrun",
        _ => "Plain",
    };
    let path = if recv == "poll" { "Poll" } else { "Multishot" };
    let ready = log.lines().filter(|l| l.contains("shard ring ready"));
    let matching = ready
        .filter(|l| l.contains(&format!("ring={flavor}")) && l.contains(&format!("recv={path}")))
        .count();
    assert_eq!(matching, 2, "both shards on {flavor}/{path}:\n{log}");
    let (mut a, mut b, b_user) = one_per_shard(&node);
    let (mut delivered, mut acked, mut pongs) = (0usize, 0usize, 0usize);
    for round in 0..ROUNDS {
        let burst = 1 + round % 5;
        // a → b across shards, then b's own shard answers a ping, then b → a across shards.
        for i in 0..burst {
            a.send_json(&json!({"op": "send", "id": format!("{round}.{i}"), "to": b_user, "data": [round, i]}));
        }
        for i in 0..burst {
            let msg = b.recv_json();
            assert_eq!(msg["data"], json!([round, i]), "round {round} ({recv})");
            delivered += 1;
        }
        for i in 0..burst {
            let ack = a.recv_json();
            assert_eq!(ack["id"], format!("{round}.{i}"), "round {round} ({recv})");
            assert_eq!(ack["status"], "delivered", "{ack}");
            acked += 1;
        }
        b.ping_pong(&format!("p{round}"));
        pongs += 1;
        b.send_json(&json!({"op": "send", "id": format!("r{round}"), "to": "a", "data": round}));
        let msg = a.recv_json();
        assert_eq!(msg["data"], json!(round), "round {round} ({recv})");
        let ack = b.recv_json();
        assert_eq!(ack["id"], format!("r{round}"), "{ack}");
        delivered += 1;
        if round % 3 == 0 {
            // Silence long enough for both drivers to park on their eventfds.
            std::thread::sleep(Duration::from_micros(200 + (round % 7) as u64 * 300));
        }
    }
    eprintln!(
        "{recv}/{ring_flags}: {delivered} delivered, {acked} acked, {pongs} pongs over {ROUNDS} rounds"
    );
    assert_eq!(pongs, ROUNDS);
}

#[test]
fn multishot_path_loses_no_wakeup() {
    bursts_and_silence("multishot", "defer");
}

#[test]
fn poll_path_loses_no_wakeup() {
    bursts_and_silence("poll", "defer");
}

/// The fallbacks of older kernels, forced on this one: `COOP_TASKRUN` (completions posted when the
/// shard's thread enters the kernel) and a ring without setup flags.
#[test]
fn older_ring_setups_lose_no_wakeup() {
    bursts_and_silence("multishot", "coop");
    bursts_and_silence("poll", "none");
}
