//! Routing across shards: direct `send` to every connection of a user, offline acks, channel fan-out to
//! 500 subscribers on two shards, unsubscribe, and presence by users and by channel.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Client, Node, NodeOpts, assert_error};
use serde_json::{Value, json};

/// Opens connections for `user` until two of them report different shards; closes the others.
fn two_conns_on_different_shards(node: &Node, user: &str) -> [(u64, Client); 2] {
    let mut conns: Vec<(u64, Client)> = Vec::new();
    for _ in 0..64 {
        let mut c = node.client();
        let ready = c.identify(user);
        let shard = ready["shard"].as_u64().expect("shard is an integer");
        conns.push((shard, c));
        let first_shard = conns[0].0;
        if let Some(pos) = conns.iter().position(|(s, _)| *s != first_shard) {
            let second = conns.remove(pos);
            let first = conns.remove(0);
            for (_, extra) in conns {
                extra.close();
            }
            return [first, second];
        }
    }
    panic!(
        "64 connections of {user} all landed on shard {} of {}",
        conns[0].0, node.shards
    );
}

#[test]
fn send_reaches_both_connections_of_a_user_on_different_shards() {
    let node = Node::start(NodeOpts::new().shards(2));
    let mut alice = node.identified("alice");
    let [(s1, mut bob1), (s2, mut bob2)] = two_conns_on_different_shards(&node, "bob");
    assert_ne!(s1, s2);
    // Wait (bounded) until the closed extra connections are gone: alice + 2 bobs remain.
    let open = node.wait_metric("gateway_connections_open", &[], 3.0, Duration::from_secs(5));
    eprintln!("gateway_connections_open = {open} before sending");

    let data = json!({"text": "hello bob", "n": [1, 2, 3], "nested": {"ok": true}});
    let ack = alice.request(json!({"op": "send", "id": "m1", "to": "bob", "data": data}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "m1", "status": "delivered", "conns": 2})
    );
    let expected = json!({"op": "message", "from": "alice", "data": data});
    assert_eq!(bob1.recv_json(), expected, "bob on shard {s1}");
    assert_eq!(bob2.recv_json(), expected, "bob on shard {s2}");
    // Exactly once: the next frame on each is the pong of a fresh ping.
    bob1.ping_pong("after-1");
    bob2.ping_pong("after-2");
    alice.ping_pong("alice-after");
}

#[test]
fn send_to_offline_user_acks_stored_or_offline_without_history() {
    let node = Node::start(NodeOpts::new().shards(2));
    let mut alice = node.identified("alice");
    let ack = alice.request(json!({"op": "send", "id": "m2", "to": "nobody", "data": {"x": 1}}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "m2", "status": "stored", "conns": 0})
    );
    // History off: nothing is kept, the ack says so, and messages carry no seq.
    let node = Node::start(NodeOpts::new().shards(2).set("history.max_messages", 0));
    let mut alice = node.identified("alice");
    let ack = alice.request(json!({"op": "send", "id": "m3", "to": "nobody", "data": {"x": 1}}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "m3", "status": "offline", "conns": 0})
    );
    let mut bob = node.identified("bob");
    bob.keep_seq();
    alice.send_json(&json!({"op": "send", "to": "bob", "data": 1}));
    assert_eq!(
        bob.recv_json(),
        json!({"op": "message", "from": "alice", "data": 1})
    );
}

#[test]
fn send_to_self_reaches_all_own_connections() {
    let node = Node::start(NodeOpts::new().shards(2));
    let mut a1 = node.identified("self");
    let mut a2 = node.identified("self");
    a1.send_json(&json!({"op": "send", "id": "m3", "to": "self", "data": "me"}));
    let expected_msg = json!({"op": "message", "from": "self", "data": "me"});
    let expected_ack = json!({"op": "ack", "id": "m3", "status": "delivered", "conns": 2});
    let mut got = vec![a1.recv_json(), a1.recv_json()];
    got.sort_by_key(|v| v["op"].as_str().unwrap_or("").to_string());
    assert_eq!(got, vec![expected_ack, expected_msg.clone()]);
    assert_eq!(a2.recv_json(), expected_msg);
    a1.ping_pong("a1");
    a2.ping_pong("a2");
}

#[test]
fn publish_fans_out_to_500_subscribers_on_two_shards() {
    const SUBS: usize = 500;
    const CHANNEL: &str = "room:fan";
    let node = Node::start(NodeOpts::new().shards(2));
    let mut subs = Vec::with_capacity(SUBS);
    let mut shards = BTreeSet::new();
    for i in 0..SUBS {
        let mut c = node.client();
        let ready = c.identify(&format!("sub{i}"));
        shards.insert(ready["shard"].as_u64().expect("shard"));
        let ack = c.request(json!({"op": "subscribe", "id": "s", "channel": CHANNEL}));
        assert_eq!(
            ack,
            json!({"op": "ack", "id": "s", "status": "subscribed"}),
            "sub{i}"
        );
        subs.push(c);
    }
    assert_eq!(
        shards,
        BTreeSet::from([0, 1]),
        "500 connections should land on both shards"
    );

    // The publisher is a second connection of sub0, itself subscribed: it must not get its own messages.
    let mut publisher = node.identified("sub0");
    let ack = publisher.request(json!({"op": "subscribe", "id": "ps", "channel": CHANNEL}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "ps", "status": "subscribed"})
    );

    let payloads: Vec<Value> = (0..3)
        .map(|k| json!({"n": k, "text": format!("message {k}")}))
        .collect();
    for (k, data) in payloads.iter().enumerate() {
        let id = format!("p{k}");
        let ack =
            publisher.request(json!({"op": "publish", "id": id, "channel": CHANNEL, "data": data}));
        assert_eq!(
            ack,
            json!({"op": "ack", "id": id, "status": "published", "conns": SUBS})
        );
    }
    publisher.ping_pong("publisher-after");

    for (i, c) in subs.iter_mut().enumerate() {
        for data in &payloads {
            let msg = c.recv_json();
            assert_eq!(
                msg,
                json!({"op": "message", "channel": CHANNEL, "from": "sub0", "data": data}),
                "subscriber sub{i}"
            );
        }
        c.send_json(&json!({"op": "ping", "id": format!("after{i}")}));
    }
    for (i, c) in subs.iter_mut().enumerate() {
        let pong = c.recv_json();
        assert_eq!(
            pong,
            json!({"op": "pong", "id": format!("after{i}")}),
            "sub{i}: a duplicate or extra frame arrived after the 3 messages"
        );
    }
}

#[test]
fn unsubscribed_connection_no_longer_receives() {
    const CHANNEL: &str = "room:u";
    let node = Node::start(NodeOpts::new().shards(2));
    let mut a = node.identified("ua");
    let mut b = node.identified("ub");
    let mut p = node.identified("up");
    for (c, id) in [(&mut a, "sa"), (&mut b, "sb")] {
        let ack = c.request(json!({"op": "subscribe", "id": id, "channel": CHANNEL}));
        assert_eq!(ack, json!({"op": "ack", "id": id, "status": "subscribed"}));
    }
    let ack = p.request(json!({"op": "publish", "id": "p1", "channel": CHANNEL, "data": 1}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "p1", "status": "published", "conns": 2})
    );
    let m1 = json!({"op": "message", "channel": CHANNEL, "from": "up", "data": 1});
    assert_eq!(a.recv_json(), m1);
    assert_eq!(b.recv_json(), m1);

    let ack = a.request(json!({"op": "unsubscribe", "id": "u1", "channel": CHANNEL}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "u1", "status": "unsubscribed"})
    );

    let ack = p.request(json!({"op": "publish", "id": "p2", "channel": CHANNEL, "data": 2}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "p2", "status": "published", "conns": 1})
    );
    assert_eq!(
        b.recv_json(),
        json!({"op": "message", "channel": CHANNEL, "from": "up", "data": 2})
    );
    // b got the second publication, so it has been routed; a must see its pong next, not a message.
    a.ping_pong("a-after-unsubscribe");
}

#[test]
fn presence_by_users_and_by_channel() {
    const CHANNEL: &str = "room:p";
    let node = Node::start(NodeOpts::new().shards(2));
    let mut alice = node.identified("alice");
    let mut bob1 = node.identified("bob");
    let mut bob2 = node.identified("bob");
    let mut dave = node.identified("dave");

    let reply =
        alice.request(json!({"op": "presence", "id": "q1", "users": ["bob", "carol", "alice"]}));
    assert_eq!(
        reply,
        json!({"op": "presence", "id": "q1", "online": {"bob": true, "carol": false, "alice": true}})
    );

    for (c, id) in [
        (&mut dave, "s1"),
        (&mut bob1, "s2"),
        (&mut bob2, "s3"),
        (&mut alice, "s4"),
    ] {
        let ack = c.request(json!({"op": "subscribe", "id": id, "channel": CHANNEL}));
        assert_eq!(ack, json!({"op": "ack", "id": id, "status": "subscribed"}));
    }
    let reply = dave.request(json!({"op": "presence", "id": "q2", "channel": CHANNEL}));
    assert_eq!(
        reply,
        json!({"op": "presence", "id": "q2", "channel": CHANNEL, "users": ["alice", "bob", "dave"], "count": 3})
    );

    // bob stays listed while one of his connections is subscribed.
    let ack = bob1.request(json!({"op": "unsubscribe", "id": "u1", "channel": CHANNEL}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "u1", "status": "unsubscribed"})
    );
    let reply = dave.request(json!({"op": "presence", "id": "q3", "channel": CHANNEL}));
    assert_eq!(
        reply,
        json!({"op": "presence", "id": "q3", "channel": CHANNEL, "users": ["alice", "bob", "dave"], "count": 3})
    );
    let ack = bob2.request(json!({"op": "unsubscribe", "id": "u2", "channel": CHANNEL}));
    assert_eq!(
        ack,
        json!({"op": "ack", "id": "u2", "status": "unsubscribed"})
    );
    let reply = dave.request(json!({"op": "presence", "id": "q4", "channel": CHANNEL}));
    assert_eq!(
        reply,
        json!({"op": "presence", "id": "q4", "channel": CHANNEL, "users": ["alice", "dave"], "count": 2})
    );

    let reply = dave.request(json!({"op": "presence", "id": "q5", "channel": "room:empty"}));
    assert_eq!(
        reply,
        json!({"op": "presence", "id": "q5", "channel": "room:empty", "users": [], "count": 0})
    );

    // A user whose only connection closed goes offline (bounded poll: the close is asynchronous).
    let carol = node.identified("carol");
    let reply = alice.request(json!({"op": "presence", "id": "q6", "users": ["carol"]}));
    assert_eq!(reply["online"], json!({"carol": true}));
    carol.close();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = alice.request(json!({"op": "presence", "id": "q7", "users": ["carol"]}));
        if reply["online"] == json!({"carol": false}) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "carol still online 5 s after closing: {reply}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // More than 100 users in one query: too_large (docs/PROTOCOL.md), connection stays open.
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let reply = alice.request(json!({"op": "presence", "id": "q8", "users": many}));
    assert_error(&reply, "too_large", Some("q8"));
    alice.ping_pong("after-q8");
}
