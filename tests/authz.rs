//! Authorization from the attacker's side, against a real node in JWT mode with tokens signed here:
//! every rule value (`any`, `grant` by claim and by subscription token, `user`, `none`) on every
//! channel operation, the JWT-mode defaults, `auth.client_send` in its three modes, and the metric
//! that counts refusals. A refusal is error `forbidden` and the connection stays open (checked by a
//! ping after each).

mod common;

use common::{Client, Node, NodeOpts, assert_error};
use common::{hs256_claims, hs256_token};
use serde_json::{Value, json};

const SECRET: &str = "authz-test-secret";

/// Namespaces covering each rule value; everything else keeps JWT mode's defaults.
const NAMESPACES: &str = r#"[
  { pattern = "public:*", subscribe = "any", presence = "any", history = "any", publish = "none" },
  { pattern = "dm:*", subscribe = "user", publish = "user", presence = "user", history = "user" },
  { pattern = "chat:*", subscribe = "grant", publish = "grant", presence = "grant", history = "grant" },
  { pattern = "feed:*", subscribe = "any", history = "none" },
]"#;

fn jwt_node(client_send: Option<&str>) -> Node {
    let mut opts = NodeOpts::new()
        .set_str("auth.jwt_hs256_secret", SECRET)
        .set("channels.namespaces", NAMESPACES)
        .set(
            "history.channels",
            r#"["public:*", "dm:*", "chat:*", "room:*", "feed:*"]"#,
        );
    if let Some(mode) = client_send {
        opts = opts.set_str("auth.client_send", mode);
    }
    Node::start(opts)
}

/// A connection identified with a token carrying `grants`.
fn connect(node: &Node, user: &str, grants: Value) -> Client {
    let mut c = node.client();
    let token = hs256_claims(SECRET, user, 3600, grants);
    let ready = c.request(json!({"op": "identify", "id": "i", "token": token}));
    assert_eq!(ready["op"], "ready", "{ready}");
    c
}

/// Sends `req` and returns the reply carrying its `id` (skipping messages that arrive meanwhile, such
/// as a publisher's own publication on a channel with history).
fn reply(c: &mut Client, req: Value) -> Value {
    let id = req["id"].clone();
    c.send_json(&req);
    loop {
        let frame = c.recv_json();
        if frame["id"] == id {
            return frame;
        }
        assert_eq!(frame["op"], "message", "waiting for {id}: {frame}");
    }
}

/// Sends `req`; asserts the reply is `forbidden` with the request's id, and that the connection is
/// still open.
fn refused(c: &mut Client, req: Value) {
    let id = req["id"].as_str().unwrap_or("?").to_string();
    let reply = c.request(req);
    assert_error(&reply, "forbidden", Some(&id));
    c.ping_pong(&format!("after-{id}"));
}

fn subscribe(channel: &str) -> Value {
    json!({"op": "subscribe", "id": format!("s-{channel}"), "channel": channel})
}

fn subscribed(c: &mut Client, req: Value) {
    let reply = c.request(req.clone());
    assert_eq!(
        (reply["op"].as_str(), reply["status"].as_str()),
        (Some("ack"), Some("subscribed")),
        "{req} -> {reply}"
    );
}

#[test]
fn jwt_mode_defaults_refuse_everything_a_grant_does_not_give() {
    let node = jwt_node(None);
    let mut c = connect(&node, "alice", json!({}));
    refused(&mut c, subscribe("room:1"));
    refused(
        &mut c,
        json!({"op": "subscribe", "id": "h", "channel": "room:1", "since": {"seq": 0}}),
    );
    refused(
        &mut c,
        json!({"op": "presence", "id": "p", "channel": "room:1"}),
    );
    refused(
        &mut c,
        json!({"op": "publish", "id": "pub", "channel": "room:1", "data": 1}),
    );
    // client_send defaults to none in JWT mode.
    refused(
        &mut c,
        json!({"op": "send", "id": "dm", "to": "bob", "data": 1}),
    );
    // History: a channel anyone may join, but not replay.
    subscribed(&mut c, subscribe("feed:1"));
    let mut d = connect(&node, "dan", json!({}));
    refused(
        &mut d,
        json!({"op": "subscribe", "id": "fh", "channel": "feed:1", "since": {"seq": 0}}),
    );
    let forbidden = |op| node.metric_sum("gateway_forbidden_total", &[("op", op)]);
    // The subscribe with `since` on room:1 is refused as a subscribe (checked first).
    assert_eq!(forbidden("subscribe"), 2.0);
    assert_eq!(forbidden("history"), 1.0);
    assert_eq!(forbidden("presence"), 1.0);
    assert_eq!(forbidden("publish"), 1.0);
    assert_eq!(forbidden("send"), 1.0);
}

#[test]
fn any_user_and_none_rules() {
    let node = jwt_node(None);
    let mut alice = connect(&node, "alice", json!({}));
    let mut eve = connect(&node, "eve", json!({}));
    // any: no grant needed to read; none: no client publishes.
    subscribed(&mut alice, subscribe("public:news"));
    subscribed(
        &mut eve,
        json!({"op": "subscribe", "id": "h", "channel": "public:news", "since": {"seq": 0}}),
    );
    let presence = eve.request(json!({"op": "presence", "id": "p", "channel": "public:news"}));
    assert_eq!(presence["op"], "presence", "{presence}");
    refused(
        &mut alice,
        json!({"op": "publish", "id": "x", "channel": "public:news", "data": 1}),
    );
    // The HTTP API is never limited: a backend publishes on a `none` channel.
    let (status, body) = node.api(
        None,
        "POST",
        "/v1/publish",
        &json!({"channel": "public:news", "data": "from the backend"}),
    );
    assert_eq!(status, 200, "{body}");
    for c in [&mut alice, &mut eve] {
        let m = c.recv_json();
        assert_eq!(m["data"], "from the backend", "{m}");
    }
    // user: a member may, a non-member may not, whatever its grants.
    let dm = "dm:#alice,bob";
    subscribed(&mut alice, subscribe(dm));
    let mut rich_eve = connect(&node, "eve", json!({"channels": ["*"], "publish": ["*"]}));
    refused(&mut rich_eve, subscribe(dm));
    refused(
        &mut rich_eve,
        json!({"op": "publish", "id": "p", "channel": dm, "data": 1}),
    );
    refused(
        &mut rich_eve,
        json!({"op": "presence", "id": "q", "channel": dm}),
    );
    let mut bob = connect(&node, "bob", json!({}));
    let ack = bob.request(json!({"op": "publish", "id": "p", "channel": dm, "data": "hi"}));
    assert_eq!(ack["status"], "published", "{ack}");
    assert_eq!(alice.recv_json()["data"], "hi");
    // A user named in another position of the list is no member of a prefix of it.
    let mut ali = connect(&node, "ali", json!({}));
    refused(&mut ali, subscribe(dm));
}

#[test]
fn grants_by_claim() {
    let node = jwt_node(None);
    let grants = json!({"channels": ["room:*", "chat:lobby"], "publish": ["chat:lobby"]});
    let mut alice = connect(&node, "alice", grants);
    subscribed(&mut alice, subscribe("room:1"));
    subscribed(
        &mut alice,
        json!({"op": "subscribe", "id": "h", "channel": "room:2", "since": {"seq": 0}}),
    );
    let presence = alice.request(json!({"op": "presence", "id": "p", "channel": "room:1"}));
    assert_eq!(presence["users"], json!(["alice"]), "{presence}");
    refused(&mut alice, subscribe("roomy:1"));
    subscribed(&mut alice, subscribe("chat:lobby"));
    let ack = reply(
        &mut alice,
        json!({"op": "publish", "id": "p", "channel": "chat:lobby", "data": 1}),
    );
    assert_eq!(ack["status"], "published", "{ack}");
    refused(
        &mut alice,
        json!({"op": "publish", "id": "p2", "channel": "room:1", "data": 1}),
    );
    // Grants are per connection: the same user with another token has only that token's.
    let mut alice2 = connect(&node, "alice", json!({}));
    refused(&mut alice2, subscribe("room:1"));
}

#[test]
fn grants_by_subscription_token() {
    let node = jwt_node(None);
    let mut alice = connect(&node, "alice", json!({}));
    let token = |sub: &str, channel: &str, exp: i64| {
        hs256_claims(SECRET, sub, exp, json!({"channel": channel}))
    };
    let with = |channel: &str, token: String| json!({"op": "subscribe", "id": "t", "channel": channel, "token": token});
    subscribed(&mut alice, with("chat:7", token("alice", "chat:7", 60)));
    // Expired, another user's, another channel's, unsigned-by-us: refused, connection open.
    refused(&mut alice, with("chat:8", token("alice", "chat:8", -10)));
    refused(&mut alice, with("chat:8", token("bob", "chat:8", 60)));
    refused(&mut alice, with("chat:8", token("alice", "chat:9", 60)));
    let forged = hs256_claims("not-the-secret", "alice", 60, json!({"channel": "chat:8"}));
    refused(&mut alice, with("chat:8", forged));
    // A connection token is no subscription token (it names no channel).
    refused(&mut alice, with("chat:8", hs256_token(SECRET, "alice", 60)));
    // The token also covers history and presence of its channel.
    let since = json!({"op": "subscribe", "id": "h", "channel": "chat:9",
        "since": {"seq": 0}, "token": token("alice", "chat:9", 60)});
    subscribed(&mut alice, since);
    let presence = alice.request(json!({"op": "presence", "id": "p", "channel": "chat:7",
        "token": token("alice", "chat:7", 60)}));
    assert_eq!(presence["op"], "presence", "{presence}");
    // A token does nothing for a `none` rule.
    refused(
        &mut alice,
        json!({"op": "publish", "id": "n", "channel": "public:x", "data": 1,
            "token": token("alice", "public:x", 60)}),
    );
}

#[test]
fn client_send_any_grant_none() {
    for (mode, to_bob, to_carol) in [
        ("any", true, true),
        ("grant", true, false),
        ("none", false, false),
    ] {
        let node = jwt_node(Some(mode));
        let mut alice = connect(&node, "alice", json!({"send_to": ["bob", "team-*"]}));
        let _bob = connect(&node, "bob", json!({}));
        let _carol = connect(&node, "carol", json!({}));
        for (to, allowed) in [("bob", to_bob), ("carol", to_carol)] {
            let req = json!({"op": "send", "id": format!("{mode}-{to}"), "to": to, "data": 1});
            if allowed {
                let ack = alice.request(req);
                assert_eq!(ack["status"], "delivered", "{mode} to {to}: {ack}");
            } else {
                refused(&mut alice, req);
            }
        }
        // The HTTP API sends whatever the mode.
        let (status, body) = node.api(
            None,
            "POST",
            "/v1/send",
            &json!({"user": "carol", "data": 2}),
        );
        assert_eq!(status, 200, "{mode}: {body}");
    }
}

#[test]
fn dev_mode_defaults_allow_everything() {
    let node = Node::start(NodeOpts::new().set("history.channels", r#"["room:*"]"#));
    let mut alice = node.identified("alice");
    let mut bob = node.identified("bob");
    subscribed(&mut bob, subscribe("room:1"));
    subscribed(
        &mut alice,
        json!({"op": "subscribe", "id": "h", "channel": "room:1", "since": {"seq": 0}}),
    );
    let presence = alice.request(json!({"op": "presence", "id": "p", "channel": "room:1"}));
    assert_eq!(presence["op"], "presence", "{presence}");
    let publish = json!({"op": "publish", "id": "p", "channel": "room:1", "data": 1});
    let ack = reply(&mut alice, publish);
    assert_eq!(ack["status"], "published", "{ack}");
    let ack = alice.request(json!({"op": "send", "id": "d", "to": "bob", "data": 2}));
    assert_eq!(ack["status"], "delivered", "{ack}");
    assert_eq!(node.metric_sum("gateway_forbidden_total", &[]), 0.0);
}

#[test]
fn an_invalid_rule_stops_the_start_with_a_clear_message() {
    let bin = env!("CARGO_BIN_EXE_gateway");
    let dir = std::env::temp_dir().join(format!("authz-bad-rule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        "[[channels.namespaces]]\npattern = \"room:*\"\npublish = \"everyone\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a bad rule: {stderr}");
    assert!(
        stderr.contains("channels.namespaces[0].publish") && stderr.contains("everyone"),
        "{stderr}"
    );
}

#[test]
fn grants_are_enforced_where_the_client_is_connected_across_nodes() {
    let redis = common::redis::RedisServer::start();
    let opts = || {
        NodeOpts::new()
            .shards(2)
            .cluster(&redis.url())
            .set_str("auth.jwt_hs256_secret", SECRET)
            .set("channels.namespaces", NAMESPACES)
    };
    let a = Node::start(opts());
    let b = Node::start(opts());
    let grants = json!({"channels": ["chat:*"], "publish": ["chat:*"]});
    let mut alice = connect(&a, "alice", grants.clone());
    let mut bob = connect(&b, "bob", grants);
    let mut eve = connect(&b, "eve", json!({"channels": ["lobby"]}));
    // Several channels, so that both shards of each node own some of them.
    for n in 0..4 {
        let channel = format!("chat:{n}");
        subscribed(&mut alice, subscribe(&channel));
        subscribed(&mut bob, subscribe(&channel));
        refused(&mut eve, subscribe(&channel));
        refused(
            &mut eve,
            json!({"op": "presence", "id": format!("p{n}"), "channel": channel}),
        );
        refused(
            &mut eve,
            json!({"op": "publish", "id": format!("x{n}"), "channel": channel, "data": n}),
        );
        let ack = reply(
            &mut alice,
            json!({"op": "publish", "id": format!("m{n}"), "channel": channel, "data": n}),
        );
        assert_eq!(
            (ack["status"].as_str(), ack["conns"].as_u64()),
            (Some("published"), Some(1)),
            "{ack}"
        );
        let got = bob.recv_json();
        assert_eq!(
            (got["channel"].as_str(), got["data"].as_i64()),
            (Some(channel.as_str()), Some(n)),
            "{got}"
        );
    }
    // eve got nothing: the next frame she reads is her own pong.
    eve.ping_pong("nothing-leaked");
    // A subscription token signed for eve opens one channel on B.
    let token = hs256_claims(SECRET, "eve", 60, json!({"channel": "chat:0"}));
    subscribed(
        &mut eve,
        json!({"op": "subscribe", "id": "tok", "channel": "chat:0", "token": token}),
    );
    assert_eq!(b.metric_sum("gateway_forbidden_total", &[]), 12.0);
    assert_eq!(a.metric_sum("gateway_forbidden_total", &[]), 0.0);
}
