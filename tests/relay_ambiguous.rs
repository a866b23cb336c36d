//! A lost reply is not a second delivery. When Redis ran the script that numbers, keeps and publishes
//! a message but its reply never came back, the sender's node cannot know whether the message exists:
//! it answers `unavailable` and delivers nothing itself, and the numbered copy (if the script ran)
//! reaches the recipient exactly once. Before, the node also delivered an unnumbered local copy, so the
//! recipient got the message twice. Real node, real Redis, behind a proxy that loses one reply.

mod common;

use std::time::Duration;

use common::cut_proxy::CutProxy;
use common::redis::RedisServer;
use common::{Client, Node, NodeOpts};
use serde_json::{Value, json};

fn node(proxy: &CutProxy) -> Node {
    Node::start(
        NodeOpts::new()
            .cluster(&proxy.url())
            .set("history.channels", r#"["room:*"]"#),
    )
}

fn client(node: &Node, user: &str) -> Client {
    let mut c = node.identified(user);
    c.keep_seq();
    c.set_read_timeout(Duration::from_secs(5));
    c
}

/// Reads `c`'s `message` frames until one carries `data.text == last`; returns them all.
fn messages_until(c: &mut Client, last: &str) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let m = c.recv_json();
        assert_eq!(m["op"], "message", "{m}");
        let done = m["data"]["text"] == last;
        got.push(m);
        if done {
            return got;
        }
    }
}

/// Sends `after-<i>` with `send` until one reaches `c` numbered (the relay is back: until then a
/// message may be delivered unnumbered, the node's documented behaviour without Redis); returns every
/// message `c` read, from before the first attempt on.
fn until_numbered(c: &mut Client, mut send: impl FnMut(&str) -> Value, ok: &str) -> Vec<Value> {
    let mut got = Vec::new();
    for i in 0..100 {
        let text = format!("after-{i}");
        let ack = send(&text);
        assert!(
            ack["status"] == ok || ack["status"] == "unavailable",
            "{ack}"
        );
        if ack["status"] == ok {
            got.extend(messages_until(c, &text));
            if got.last().is_some_and(|m| m["seq"].is_u64()) {
                return got;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the relay did not come back: {got:?}");
}

/// A node behind a proxy to a real Redis, with alice (the recipient) and bob (the sender); bob's
/// first message to alice is delivered and read (numbered 1). Fields drop in order: clients first.
struct Pair {
    alice: Client,
    bob: Client,
    _node: Node,
    proxy: CutProxy,
    _redis: RedisServer,
}

fn pair() -> Pair {
    let redis = RedisServer::start();
    let proxy = CutProxy::start(redis.addr());
    let node = node(&proxy);
    let mut alice = client(&node, "alice");
    let mut bob = client(&node, "bob");
    assert_eq!(send(&mut bob, "w", "warm")["status"], "delivered");
    assert_eq!(messages_until(&mut alice, "warm")[0]["seq"], 1);
    Pair {
        alice,
        bob,
        _node: node,
        proxy,
        _redis: redis,
    }
}

/// Bob's `send` of `text` to alice; returns the ack.
fn send(bob: &mut Client, id: &str, text: &str) -> Value {
    bob.request(json!({"op": "send", "id": id, "to": "alice", "data": {"text": text}}))
}

/// The messages of `got` whose text is `text`.
fn with_text<'a>(got: &'a [Value], text: &str) -> Vec<&'a Value> {
    got.iter().filter(|m| m["data"]["text"] == text).collect()
}

#[test]
fn a_send_whose_reply_is_lost_arrives_once_numbered_and_is_acked_unavailable() {
    let mut p = pair();

    p.proxy.arm(b"lost-reply-5d1c");
    let ack = send(&mut p.bob, "x", "lost-reply-5d1c");
    assert_eq!(
        p.proxy.cuts(),
        1,
        "the proxy cut the script's connection: {ack}"
    );
    assert_eq!(
        (
            ack["op"].as_str(),
            ack["id"].as_str(),
            ack["status"].as_str()
        ),
        (Some("ack"), Some("x"), Some("unavailable")),
        "{ack}"
    );
    let got = until_numbered(&mut p.alice, |t| send(&mut p.bob, "a", t), "delivered");
    let lost = with_text(&got, "lost-reply-5d1c");
    assert_eq!(lost.len(), 1, "exactly one copy: {got:?}");
    assert_eq!(lost[0]["seq"], 2, "numbered, after the first: {got:?}");
    assert_eq!(got[0]["seq"], 2, "the first message alice reads: {got:?}");
    assert_eq!(
        got.last().unwrap()["seq"],
        3,
        "the next numbered message follows it: {got:?}"
    );
}

#[test]
fn a_publication_whose_reply_is_lost_arrives_once_numbered() {
    let redis = RedisServer::start();
    let proxy = CutProxy::start(redis.addr());
    let node = node(&proxy);
    let mut alice = client(&node, "alice");
    let sub = alice.request(json!({"op": "subscribe", "id": "s", "channel": "room:1"}));
    assert_eq!(sub["status"], "subscribed", "{sub}");
    let mut bob = client(&node, "bob");
    let publish = |bob: &mut Client, id: &str, text: &str| {
        bob.request(json!({"op": "publish", "id": id, "channel": "room:1", "data": {"text": text}}))
    };
    assert_eq!(publish(&mut bob, "w", "warm")["status"], "published");
    assert_eq!(messages_until(&mut alice, "warm")[0]["seq"], 1);

    proxy.arm(b"lost-reply-90ab");
    let ack = publish(&mut bob, "x", "lost-reply-90ab");
    assert_eq!(
        proxy.cuts(),
        1,
        "the proxy cut the script's connection: {ack}"
    );
    assert_eq!(
        (ack["id"].as_str(), ack["status"].as_str()),
        (Some("x"), Some("unavailable")),
        "{ack}"
    );
    let got = until_numbered(&mut alice, |t| publish(&mut bob, "a", t), "published");
    let lost = with_text(&got, "lost-reply-90ab");
    assert_eq!(lost.len(), 1, "exactly one copy: {got:?}");
    assert_eq!(lost[0]["seq"], 2, "numbered, after the first: {got:?}");
    assert_eq!(got[0]["seq"], 2, "the first message alice reads: {got:?}");
    assert_eq!(
        got.last().unwrap()["seq"],
        3,
        "the next numbered message follows it: {got:?}"
    );
}

#[test]
fn a_send_redis_never_answers_is_still_acked() {
    // Redis runs the request and its connection then stays silent, longer than the relay waits. A
    // timeout is a lost reply too: the sender is answered `unavailable` (not never: each round trip
    // is cut at the relay's bound with its messages kept), and the recipient reads one numbered copy.
    let mut p = pair();

    p.proxy.stall(b"silent-3e77", Duration::from_secs(8));
    let ack = send(&mut p.bob, "x", "silent-3e77");
    assert_eq!(
        (ack["id"].as_str(), ack["status"].as_str()),
        (Some("x"), Some("unavailable")),
        "{ack}"
    );
    let got = until_numbered(&mut p.alice, |t| send(&mut p.bob, "a", t), "delivered");
    let silent = with_text(&got, "silent-3e77");
    assert_eq!(silent.len(), 1, "exactly one copy: {got:?}");
    assert_eq!(silent[0]["seq"], 2, "numbered, after the first: {got:?}");
}
