//! Cross-node scenarios run against each kind of Redis deployment: one server (tests/cluster_*.rs,
//! tests/resume.rs) and a Redis Cluster (tests/redis_cluster.rs). Each takes running nodes that share
//! one Redis and checks what a client sees; nothing here knows which Redis it is.

use std::{
    thread,
    time::{Duration, Instant},
};

use super::{Client, Node, http_request};
use serde_json::{Value, json};

/// Messages kept per user by the nodes given to [`disconnect_and_resume`] (`history.max_messages`).
pub const KEPT: u64 = 150;
/// Bound on a cluster-wide change becoming visible.
const WAIT: Duration = Duration::from_secs(15);

/// Polls `f` until it returns true.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Sends and returns the ack.
pub fn send(c: &mut Client, id: &str, to: &str, data: Value) -> Value {
    let ack = c.request(json!({"op": "send", "id": id, "to": to, "data": data}));
    assert_eq!(ack["op"], "ack", "{ack}");
    assert_eq!(ack["id"], id, "{ack}");
    ack
}

pub fn subscribe(c: &mut Client, channel: &str) {
    let ack = c.request(json!({"op": "subscribe", "id": "s", "channel": channel}));
    assert_eq!(ack, json!({"op": "ack", "id": "s", "status": "subscribed"}));
}

pub fn publish(c: &mut Client, id: &str, channel: &str, data: Value) -> Value {
    let ack = c.request(json!({"op": "publish", "id": id, "channel": channel, "data": data}));
    assert_eq!(ack["op"], "ack", "{ack}");
    assert_eq!(ack["id"], id, "{ack}");
    ack
}

/// The users the `presence` op reports for `channel`, asked through `c`.
pub fn channel_presence(c: &mut Client, channel: &str) -> Value {
    let reply = c.request(json!({"op": "presence", "id": "p", "channel": channel}));
    assert_eq!(reply["op"], "presence", "{reply}");
    reply["users"].clone()
}

/// Identifies `user` with a resume position; returns the client and its `ready`.
pub fn resume(node: &Node, user: &str, epoch: Option<&str>, seq: u64) -> (Client, Value) {
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
pub fn send_many(sender: &mut Client, to: &str, first: u64, n: u64) -> Vec<String> {
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
pub fn read_many(c: &mut Client, n: usize, epoch: &str) -> Vec<(u64, u64)> {
    (0..n)
        .map(|_| {
            let m = c.recv_json();
            assert_eq!(m["op"], "message", "{m}");
            assert_eq!(m["epoch"], epoch, "{m}");
            (m["seq"].as_u64().unwrap(), m["data"]["n"].as_u64().unwrap())
        })
        .collect()
}

/// Direct messages between nodes `a` and `b` both ways, a user on both nodes counted in one ack, a
/// user nowhere (`stored`), and the HTTP API of one node reaching a user on the other.
/// `presence_nodes(user)` reads how many nodes hold `user` in Redis.
pub fn direct_messages_cross_nodes_both_ways(
    a: &Node,
    b: &Node,
    presence_nodes: &dyn Fn(&str) -> usize,
) {
    let wait_presence = |user: &str, nodes: usize| {
        eventually(&format!("{user} held by {nodes} node(s) in Redis"), || {
            presence_nodes(user) == nodes
        })
    };
    let mut alice = a.identified("alice");
    let mut bob = b.identified("bob");
    wait_presence("alice", 1);
    wait_presence("bob", 1);

    let ack = send(&mut alice, "m1", "bob", json!({"text": "hi bob"}));
    assert_eq!(
        (ack["status"].as_str(), ack["conns"].as_u64()),
        (Some("delivered"), Some(1)),
        "{ack}"
    );
    assert_eq!(
        bob.recv_json(),
        json!({"op": "message", "from": "alice", "data": {"text": "hi bob"}})
    );

    let ack = send(&mut bob, "m2", "alice", json!("hi alice"));
    assert_eq!(ack["conns"], 1, "{ack}");
    assert_eq!(alice.recv_json()["data"], "hi alice");

    // bob on both nodes: one send reaches both, the ack counts both.
    let mut bob_on_a = a.identified("bob");
    wait_presence("bob", 2);
    let ack = send(&mut alice, "m3", "bob", json!(3));
    assert_eq!(
        (ack["status"].as_str(), ack["conns"].as_u64()),
        (Some("delivered"), Some(2)),
        "{ack}"
    );
    for c in [&mut bob, &mut bob_on_a] {
        assert_eq!(c.recv_json()["data"], 3);
        c.ping_pong("no-duplicate");
    }

    let ack = send(&mut alice, "m4", "nobody", json!(null));
    assert_eq!(
        (ack["status"].as_str(), ack["conns"].as_u64()),
        (Some("stored"), Some(0)),
        "{ack}"
    );

    // The HTTP API of node a reaches bob on node b too.
    bob_on_a.close();
    wait_presence("bob", 1);
    let body = json!({"user": "bob", "data": "from a backend"}).to_string();
    let (status, text) = http_request(a.admin_addr, "POST", "/v1/send", &[], &body).unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"status": "delivered", "conns": 1})
    );
    assert_eq!(
        bob.recv_json(),
        json!({"op": "message", "data": "from a backend"})
    );
}

/// A publication from each of three nodes reaches 300 subscribers spread over them exactly once, the
/// acks count all 300, and a subscribed publisher is skipped.
pub fn fan_out_to_300_subscribers_on_three_nodes(nodes: &[Node]) {
    let mut subs: Vec<Client> = (0..300)
        .map(|i| {
            let mut c = nodes[i % 3].identified(&format!("sub{i}"));
            subscribe(&mut c, "news");
            c
        })
        .collect();
    // The subscribe acks came after each node listened to the topic: no waiting needed.
    let mut publishers: Vec<Client> = (0..3)
        .map(|n| nodes[n].identified(&format!("pub{n}")))
        .collect();
    for (n, p) in publishers.iter_mut().enumerate() {
        let ack = publish(p, &format!("m{n}"), "news", json!({"from_node": n}));
        assert_eq!(
            (ack["status"].as_str(), ack["conns"].as_u64()),
            (Some("published"), Some(300)),
            "publish from node {n}: {ack}"
        );
    }
    for (i, c) in subs.iter_mut().enumerate() {
        let mut got: Vec<u64> = (0..3)
            .map(|_| {
                let m = c.recv_json();
                assert_eq!(m["op"], "message", "subscriber {i}: {m}");
                assert_eq!(m["channel"], "news", "subscriber {i}: {m}");
                m["data"]["from_node"].as_u64().unwrap()
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2], "subscriber {i}");
        // Nothing more: a fourth frame would be a duplicate.
        c.ping_pong("exactly-once");
    }

    // A subscribed publisher is skipped, everywhere else reached once.
    let ack = publish(&mut subs[0], "self", "news", json!("from a subscriber"));
    assert_eq!(ack["conns"], 299, "{ack}");
    subs[0].ping_pong("not-to-self");
    for c in subs.iter_mut().skip(1) {
        assert_eq!(c.recv_json()["data"], "from a subscriber");
    }
}

/// Bob reads 10 live messages, drops, misses 100 (acked `stored`), resumes: all 100 in order, then live.
pub fn disconnect_and_resume(a: &Node, b: &Node) {
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

/// Senders on both nodes at once to one user connected on both nodes: both connections see the same
/// messages under the same seqs, 1 to the total in order (no hole, nothing crossed on the way), and
/// each sender's messages in the order sent.
pub fn senders_on_two_nodes_make_one_order(a: &Node, b: &Node) {
    const EACH: u64 = 300;
    let (mut on_a, ready) = resume(a, "carol", None, 0);
    let epoch = ready["epoch"].as_str().unwrap().to_string();
    let (mut on_b, ready) = resume(b, "carol", None, 0);
    assert_eq!(ready["epoch"], epoch.as_str(), "{ready}");
    std::thread::scope(|s| {
        for (i, node) in [a, b].into_iter().enumerate() {
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
