//! Channel history, end to end: on channels matching `history.channels` every publication carries the
//! channel's `seq` and `epoch`, and `subscribe` with `since` replays what the subscriber missed, in
//! order, before live publications, or says why it cannot (`resumed:false` with a reason). On one node
//! (the embedded ring) and across two nodes (Redis streams, numbered and published by one script), where
//! publishers on both nodes must produce one order that every subscriber sees.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::redis::RedisServer;
use common::{Client, Node, NodeOpts, assert_error};
use serde_json::{Value, json};

/// Publications kept per channel in these tests.
const KEPT: u64 = 150;

fn opts() -> NodeOpts {
    NodeOpts::new()
        .shards(2)
        .set("history.max_messages", KEPT)
        .set("history.channels", r#"["room:*", "feed"]"#)
        .set("limits.rate_limit_per_sec", 0)
}

/// A client of `user` that keeps `seq` and `epoch` on messages.
fn client(node: &Node, user: &str) -> Client {
    let mut c = node.identified(user);
    c.keep_seq();
    c
}

/// Subscribes `c` to `channel` from (`epoch`, `seq`); returns the `subscribed` ack.
fn subscribe_since(c: &mut Client, channel: &str, epoch: Option<&str>, seq: u64) -> Value {
    let ack = c.request(json!({
        "op": "subscribe", "id": "s", "channel": channel, "since": {"epoch": epoch, "seq": seq},
    }));
    assert_eq!(ack["op"], "ack", "{ack}");
    assert_eq!(ack["status"], "subscribed", "{ack}");
    assert_eq!(ack["id"], "s", "{ack}");
    ack
}

/// Publishes `n` messages numbered from `first`; returns each ack's `conns`.
fn publish_many(c: &mut Client, channel: &str, first: u64, n: u64) -> Vec<u64> {
    for i in first..first + n {
        c.send_json(
            &json!({"op": "publish", "id": format!("p{i}"), "channel": channel, "data": {"n": i}}),
        );
    }
    (0..n)
        .map(|_| {
            let ack = c.recv_json();
            assert_eq!(ack["op"], "ack", "{ack}");
            assert_eq!(ack["status"], "published", "{ack}");
            ack["conns"].as_u64().unwrap()
        })
        .collect()
}

/// Reads `n` publications of `channel`; returns (seq, data.n) of each, checking their `epoch`.
fn read_many(c: &mut Client, channel: &str, n: usize, epoch: &str) -> Vec<(u64, u64)> {
    (0..n)
        .map(|_| {
            let m = c.recv_json();
            assert_eq!(m["op"], "message", "{m}");
            assert_eq!(m["channel"], channel, "{m}");
            assert_eq!(m["epoch"], epoch, "{m}");
            (m["seq"].as_u64().unwrap(), m["data"]["n"].as_u64().unwrap())
        })
        .collect()
}

fn seqs(from: u64, to: u64) -> Vec<(u64, u64)> {
    (from..=to).map(|i| (i, i)).collect()
}

/// A subscriber reads live, leaves, misses 100, subscribes again with `since` on the other node: all
/// 100 in order, then live; then the gaps that cannot be filled, each reported.
fn missed_publications_are_replayed(a: &Node, b: &Node) {
    let mut sub = client(a, "sub");
    let ack = subscribe_since(&mut sub, "room:1", None, 0);
    assert_eq!(
        (
            ack["resumed"].clone(),
            ack["seq"].clone(),
            ack["replayed"].clone()
        ),
        (json!(true), json!(0), json!(0)),
        "{ack}"
    );
    let epoch = ack["epoch"].as_str().expect("epoch in the ack").to_string();
    let mut publisher = b.identified("pub");
    assert_eq!(publish_many(&mut publisher, "room:1", 1, 10), [1; 10]);
    assert_eq!(read_many(&mut sub, "room:1", 10, &epoch), seqs(1, 10));
    sub.close();
    std::thread::sleep(Duration::from_millis(200)); // the node notices the close
    assert_eq!(publish_many(&mut publisher, "room:1", 11, 100), [0; 100]);

    let mut sub = client(b, "sub");
    let ack = subscribe_since(&mut sub, "room:1", Some(&epoch), 10);
    assert_eq!(
        (
            ack["resumed"].clone(),
            ack["seq"].clone(),
            ack["replayed"].clone()
        ),
        (json!(true), json!(110), json!(100)),
        "{ack}"
    );
    assert_eq!(ack["epoch"], epoch.as_str());
    assert_eq!(read_many(&mut sub, "room:1", 100, &epoch), seqs(11, 110));
    assert_eq!(publish_many(&mut publisher, "room:1", 111, 1), [1]);
    assert_eq!(read_many(&mut sub, "room:1", 1, &epoch), seqs(111, 111));
    // Already subscribed: a replay would interleave with the live stream.
    let err =
        sub.request(json!({"op": "subscribe", "id": "again", "channel": "room:1", "since": {}}));
    assert_error(&err, "bad_request", Some("again"));
    sub.close();

    // Too old: 200 more while away, only KEPT kept; what is kept still comes.
    std::thread::sleep(Duration::from_millis(200));
    publish_many(&mut publisher, "room:1", 112, 200);
    let mut sub = client(a, "sub");
    let ack = subscribe_since(&mut sub, "room:1", Some(&epoch), 111);
    assert_eq!(ack["resumed"], false, "{ack}");
    assert_eq!(ack["reason"], "too_old", "{ack}");
    assert_eq!(
        (ack["seq"].clone(), ack["replayed"].clone()),
        (json!(311), json!(KEPT))
    );
    assert_eq!(
        read_many(&mut sub, "room:1", KEPT as usize, &epoch),
        seqs(311 - KEPT + 1, 311)
    );
    sub.close();

    // A foreign epoch: the replay is this stream's kept publications.
    let mut sub = client(b, "sub");
    let ack = subscribe_since(&mut sub, "room:1", Some("00000000deadbeef"), 5);
    assert_eq!(ack["reason"], "epoch_changed", "{ack}");
    assert_eq!(ack["epoch"], epoch.as_str());
    assert_eq!(
        read_many(&mut sub, "room:1", KEPT as usize, &epoch).len(),
        KEPT as usize
    );
    // Past the end.
    let mut other = client(a, "other");
    let ack = subscribe_since(&mut other, "room:1", Some(&epoch), 999);
    assert_eq!(ack["reason"], "invalid_position", "{ack}");
    // Both subscribers get the next publication with the same seq; so does a publisher that is
    // subscribed (a stream with history has no holes, its own publications included).
    let mut own = client(b, "own");
    subscribe_since(&mut own, "room:1", Some(&epoch), 311);
    own.send_json(&json!({"op": "publish", "id": "p312", "channel": "room:1", "data": {"n": 312}}));
    let mut frames = [own.recv_json(), own.recv_json()];
    frames.sort_by_key(|f| f["op"] != "ack");
    let [ack, message] = frames;
    assert_eq!(
        (ack["status"].clone(), ack["conns"].clone()),
        (json!("published"), json!(3)),
        "{ack}"
    );
    assert_eq!(
        (message["seq"].clone(), message["data"]["n"].clone()),
        (json!(312), json!(312)),
        "{message}"
    );
    assert_eq!(read_many(&mut sub, "room:1", 1, &epoch), seqs(312, 312));
    assert_eq!(read_many(&mut other, "room:1", 1, &epoch), seqs(312, 312));
}

/// `since` on a channel without history: subscribed, told `no_history`; publications stay unnumbered
/// and skip the publisher.
fn channels_without_history_say_so(a: &Node, b: &Node) {
    let mut sub = client(a, "nh-sub");
    let ack = subscribe_since(&mut sub, "chat:1", None, 0);
    assert_eq!(
        (
            ack["resumed"].clone(),
            ack["reason"].clone(),
            ack["epoch"].clone()
        ),
        (json!(false), json!("no_history"), Value::Null),
        "{ack}"
    );
    let mut publisher = b.identified("nh-pub");
    publisher.request(json!({"op": "subscribe", "channel": "chat:1"}));
    assert_eq!(publish_many(&mut publisher, "chat:1", 1, 1), [1]);
    let m = sub.recv_json();
    assert_eq!(m["data"]["n"], 1, "{m}");
    assert!(m.get("seq").is_none() && m.get("epoch").is_none(), "{m}");
    // The publisher did not get its own publication: the next frame is the ping's pong.
    publisher.ping_pong("after");
}

#[test]
fn channel_history_on_one_node() {
    let node = Node::start(opts());
    missed_publications_are_replayed(&node, &node);
    channels_without_history_say_so(&node, &node);
}

#[test]
fn channel_history_across_nodes() {
    let redis = RedisServer::start();
    let a = Node::start(opts().cluster(&redis.url()));
    let b = Node::start(opts().cluster(&redis.url()));
    missed_publications_are_replayed(&a, &b);
    channels_without_history_say_so(&a, &b);
}

/// Publishers on both nodes at once, subscribers on both nodes: every subscriber sees the same
/// publications under the same seqs, 1 to the total without a hole, in seq order.
#[test]
fn publishers_on_two_nodes_make_one_order() {
    const EACH: u64 = 300;
    let redis = RedisServer::start();
    let a = Node::start(opts().cluster(&redis.url()));
    let b = Node::start(opts().cluster(&redis.url()));
    let mut subs: Vec<Client> = [&a, &b, &a, &b]
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let mut c = client(node, &format!("order-sub{i}"));
            subscribe_since(&mut c, "room:order", None, 0);
            c
        })
        .collect();
    std::thread::scope(|s| {
        for (i, node) in [&a, &b].into_iter().enumerate() {
            s.spawn(move || {
                let mut p = node.identified(&format!("order-pub{i}"));
                let first = 1 + i as u64 * EACH;
                let conns = publish_many(&mut p, "room:order", first, EACH);
                assert!(conns.iter().all(|&c| c == 4), "{conns:?}");
            });
        }
    });
    let mut seen: Option<BTreeMap<u64, u64>> = None;
    for sub in &mut subs {
        let first = sub.recv_json();
        let epoch = first["epoch"].as_str().unwrap().to_string();
        let mut got = vec![(
            first["seq"].as_u64().unwrap(),
            first["data"]["n"].as_u64().unwrap(),
        )];
        got.extend(read_many(sub, "room:order", 2 * EACH as usize - 1, &epoch));
        let numbers: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(numbers, (1..=2 * EACH).collect::<Vec<_>>());
        // Each publisher's own order is kept within the channel's order.
        for publisher in 0..2 {
            let mine: Vec<u64> = got
                .iter()
                .map(|(_, n)| *n)
                .filter(|n| (n - 1) / EACH == publisher)
                .collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        }
        let map: BTreeMap<u64, u64> = got.into_iter().collect();
        match &seen {
            None => seen = Some(map),
            Some(first) => assert_eq!(first, &map, "subscribers disagree on the order"),
        }
    }
}

/// Subscribers join with `since` while publications keep coming: the replay and the live stream meet
/// without a hole or a duplicate.
fn join_during_publishing(a: &Node, b: &Node, channel: &str) {
    const TOTAL: u64 = 600;
    let mut first = client(a, "join-first");
    let ack = subscribe_since(&mut first, channel, None, 0);
    let epoch = ack["epoch"].as_str().unwrap().to_string();
    let start = ack["seq"].as_u64().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut p = b.identified("join-pub");
            for chunk in 0..TOTAL / 10 {
                publish_many(&mut p, channel, 1 + chunk * 10, 10);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let mut read = 0u64;
        for (round, at) in [60u64, 200, 350, 500].into_iter().enumerate() {
            let got = read_many(&mut first, channel, (at - read) as usize, &epoch);
            read = at;
            assert_eq!(got.last().map(|(seq, _)| *seq), Some(start + at));
            // Join from a little before where the first subscriber is now: part replay, part live.
            let from = start + at - 20;
            let mut late = client(if round % 2 == 0 { a } else { b }, "join-late");
            let ack = subscribe_since(&mut late, channel, Some(&epoch), from);
            assert_eq!(ack["resumed"], true, "{ack}");
            let epoch = &epoch;
            s.spawn(move || {
                let got = read_many(&mut late, channel, (start + TOTAL - from) as usize, epoch);
                let numbers: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
                assert_eq!(
                    numbers,
                    (from + 1..=start + TOTAL).collect::<Vec<_>>(),
                    "joined at {}",
                    ack["seq"]
                );
                late.ping_pong("nothing-more");
            });
        }
        let got = read_many(&mut first, channel, (TOTAL - read) as usize, &epoch);
        assert_eq!(got.last().map(|(seq, _)| *seq), Some(start + TOTAL));
    });
}

#[test]
fn joining_while_publishing_on_one_node() {
    let node = Node::start(opts());
    join_during_publishing(&node, &node, "room:join");
}

#[test]
fn joining_while_publishing_across_nodes() {
    let redis = RedisServer::start();
    let a = Node::start(opts().cluster(&redis.url()));
    let b = Node::start(opts().cluster(&redis.url()));
    join_during_publishing(&a, &b, "room:join");
}
