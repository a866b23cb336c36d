//! History and resume, end to end: every direct message carries `seq` and `epoch`; a client that
//! disconnects mid-stream and resumes gets everything it missed, in order, before live messages; a gap
//! the history cannot fill is reported (`resumed:false` with a reason), never silent. On one node
//! (the embedded ring) and across two nodes (Redis streams): disconnect from A, resume on B.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{Client, Node, NodeOpts};
use serde_json::{Value, json};

/// Identifies `user` with a resume position; returns the client and its `ready`.
fn resume(node: &Node, user: &str, epoch: Option<&str>, seq: u64) -> (Client, Value) {
    let mut c = node.client();
    c.keep_seq();
    let ready = c.request(json!({
        "op": "identify", "id": "r", "user": user,
        "resume": {"session": "0123456789abcdef", "epoch": epoch, "seq": seq},
    }));
    assert_eq!(ready["op"], "ready", "{ready}");
    assert_eq!(ready["id"], "r", "{ready}");
    (c, ready)
}

/// Sends `n` messages numbered from `first` to `to`; returns the ack statuses.
fn send_many(sender: &mut Client, to: &str, first: u64, n: u64) -> Vec<String> {
    for i in first..first + n {
        sender.send_json(&json!({"op": "send", "id": format!("m{i}"), "to": to, "data": {"n": i}}));
    }
    (0..n)
        .map(|_| {
            let ack = sender.recv_json();
            assert_eq!(ack["op"], "ack", "{ack}");
            ack["status"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Reads `n` messages; returns (seq, data.n) of each, checking they all carry `epoch`.
fn read_many(c: &mut Client, n: usize, epoch: &str) -> Vec<(u64, u64)> {
    (0..n)
        .map(|_| {
            let m = c.recv_json();
            assert_eq!(m["op"], "message", "{m}");
            assert_eq!(m["epoch"], epoch, "{m}");
            (m["seq"].as_u64().unwrap(), m["data"]["n"].as_u64().unwrap())
        })
        .collect()
}

/// Bob reads 10 live messages, drops, misses 100 (acked `stored`), resumes: all 100 in order, then live.
fn disconnect_and_resume(a: &Node, b: &Node) {
    let (mut bob, ready) = resume(a, "bob", None, 0);
    assert_eq!(ready["resumed"], true, "{ready}");
    assert_eq!(ready["seq"], 0, "{ready}");
    let epoch = ready["epoch"].as_str().expect("epoch in ready").to_string();
    let mut alice = b.identified("alice");
    assert!(
        send_many(&mut alice, "bob", 1, 10)
            .iter()
            .all(|s| s == "delivered")
    );
    let live = read_many(&mut bob, 10, &epoch);
    assert_eq!(live, (1..=10).map(|i| (i, i)).collect::<Vec<_>>());
    bob.close();
    std::thread::sleep(Duration::from_millis(200)); // the node notices the close
    let acks = send_many(&mut alice, "bob", 11, 100);
    assert!(acks.iter().all(|s| s == "stored"), "{acks:?}");

    let (mut bob, ready) = resume(b, "bob", Some(&epoch), 10);
    assert_eq!(ready["resumed"], true, "{ready}");
    assert_eq!(
        (ready["seq"].clone(), ready["replayed"].clone()),
        (json!(110), json!(100)),
        "{ready}"
    );
    assert_eq!(ready["epoch"], epoch.as_str());
    let replayed = read_many(&mut bob, 100, &epoch);
    assert_eq!(replayed, (11..=110).map(|i| (i, i)).collect::<Vec<_>>());
    // Live messages follow the replay.
    assert_eq!(send_many(&mut alice, "bob", 111, 1), ["delivered"]);
    assert_eq!(read_many(&mut bob, 1, &epoch), [(111, 111)]);

    // Too old: 200 more while away, but only KEPT (150) are kept.
    bob.close();
    std::thread::sleep(Duration::from_millis(200));
    send_many(&mut alice, "bob", 112, 200);
    let (mut bob, ready) = resume(a, "bob", Some(&epoch), 111);
    assert_eq!(ready["resumed"], false, "{ready}");
    assert_eq!(ready["reason"], "too_old", "{ready}");
    assert_eq!(
        (ready["seq"].clone(), ready["replayed"].clone()),
        (json!(311), json!(KEPT))
    );
    // What is kept still comes, so the client knows exactly what it lost (seq 112..=161).
    let kept = read_many(&mut bob, KEPT as usize, &epoch);
    assert_eq!(kept.first(), Some(&(162, 162)));
    assert_eq!(kept.last(), Some(&(311, 311)));
    bob.close();

    // Another epoch: the client's stream is not this one; what is kept of this one comes.
    let (mut bob, ready) = resume(b, "bob", Some("00000000deadbeef"), 5);
    assert_eq!(ready["resumed"], false, "{ready}");
    assert_eq!(ready["reason"], "epoch_changed", "{ready}");
    assert_eq!(ready["epoch"], epoch.as_str());
    assert_eq!(
        read_many(&mut bob, KEPT as usize, &epoch).len(),
        KEPT as usize
    );
    // Up to date: nothing to replay.
    let (mut up, ready) = resume(a, "bob", Some(&epoch), 311);
    assert_eq!(
        (ready["resumed"].clone(), ready["replayed"].clone()),
        (json!(true), json!(0))
    );
    // Past the end of the stream.
    let (_, ready) = resume(a, "bob", Some(&epoch), 999);
    assert_eq!(ready["reason"], "invalid_position", "{ready}");
    // Both connections of bob get the next message, with the same seq.
    assert_eq!(send_many(&mut alice, "bob", 312, 1), ["delivered"]);
    assert_eq!(read_many(&mut up, 1, &epoch), [(312, 312)]);
    assert_eq!(read_many(&mut bob, 1, &epoch), [(312, 312)]);
}

/// Messages kept per user in these tests.
const KEPT: u64 = 150;

#[test]
fn resume_on_one_node() {
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .set("history.max_messages", KEPT)
            .set("limits.rate_limit_per_sec", 0),
    );
    disconnect_and_resume(&node, &node);
}

#[test]
fn resume_across_nodes() {
    let redis = RedisServer::start();
    let opts = || {
        NodeOpts::new()
            .shards(2)
            .cluster(&redis.url())
            .set("history.max_messages", KEPT)
            .set("limits.rate_limit_per_sec", 0)
    };
    let a = Node::start(opts());
    let b = Node::start(opts());
    disconnect_and_resume(&a, &b);
}

/// Messages sent before a user's first connection reach it when it identifies with `"resume":{}`.
fn first_connection_gets_what_was_stored(a: &Node, b: &Node) {
    let mut alice = a.identified("alice2");
    assert!(
        send_many(&mut alice, "newbie", 1, 5)
            .iter()
            .all(|s| s == "stored")
    );
    let (mut newbie, ready) = resume(b, "newbie", None, 0);
    assert_eq!(
        (ready["resumed"].clone(), ready["replayed"].clone()),
        (json!(true), json!(5)),
        "{ready}"
    );
    let epoch = ready["epoch"].as_str().unwrap().to_string();
    assert_eq!(
        read_many(&mut newbie, 5, &epoch),
        (1..=5).map(|i| (i, i)).collect::<Vec<_>>()
    );
}

#[test]
fn first_connection_gets_stored_messages() {
    let node = Node::start(NodeOpts::new().shards(2));
    first_connection_gets_what_was_stored(&node, &node);
    let redis = RedisServer::start();
    let a = Node::start(NodeOpts::new().shards(2).cluster(&redis.url()));
    let b = Node::start(NodeOpts::new().shards(2).cluster(&redis.url()));
    first_connection_gets_what_was_stored(&a, &b);
}

/// Senders on both nodes at once to one user connected on both nodes: both connections see the same
/// messages under the same seqs, 1 to the total in order (no hole, nothing crossed on the way), and
/// each sender's messages in the order sent.
#[test]
fn senders_on_two_nodes_make_one_order() {
    const EACH: u64 = 300;
    let redis = RedisServer::start();
    let opts = || {
        NodeOpts::new()
            .shards(2)
            .cluster(&redis.url())
            .set("limits.rate_limit_per_sec", 0)
    };
    let a = Node::start(opts());
    let b = Node::start(opts());
    let (mut on_a, ready) = resume(&a, "carol", None, 0);
    let epoch = ready["epoch"].as_str().unwrap().to_string();
    let (mut on_b, ready) = resume(&b, "carol", None, 0);
    assert_eq!(ready["epoch"], epoch.as_str(), "{ready}");
    std::thread::scope(|s| {
        for (i, node) in [&a, &b].into_iter().enumerate() {
            s.spawn(move || {
                let mut sender = node.identified(&format!("order-sender{i}"));
                let statuses = send_many(&mut sender, "carol", 1 + i as u64 * EACH, EACH);
                assert!(statuses.iter().all(|s| s == "delivered"), "{statuses:?}");
            });
        }
    });
    let mut seen: Option<Vec<(u64, u64)>> = None;
    for carol in [&mut on_a, &mut on_b] {
        let got = read_many(carol, 2 * EACH as usize, &epoch);
        let seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=2 * EACH).collect::<Vec<_>>());
        for sender in 0..2 {
            let mine: Vec<u64> = got
                .iter()
                .map(|(_, n)| *n)
                .filter(|n| (n - 1) / EACH == sender)
                .collect();
            assert_eq!(mine.len() as u64, EACH);
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        }
        match &seen {
            None => seen = Some(got),
            Some(first) => assert_eq!(first, &got, "the connections disagree on the order"),
        }
    }
}
