//! `ready` means reachable cluster-wide: in cluster mode a connection's `ready` goes out only once its
//! presence is in Redis, so a message sent to the user from any node right after `ready` is delivered
//! live (issue 12's seed scenario, repeated with fresh users). Real redis-server, two gateway nodes.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{Node, NodeOpts};
use serde_json::json;

/// Fresh users tried in a row: each identifies on B while alice on A sends to it at once.
const ROUNDS: usize = 200;

fn node(redis: &RedisServer) -> Node {
    Node::start(NodeOpts::new().shards(2).cluster(&redis.url()))
}

#[test]
fn a_message_sent_right_after_ready_from_another_node_is_delivered_live() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let b = node(&redis);
    let mut alice = a.identified("alice");
    for round in 0..ROUNDS {
        let user = format!("bob-{round}");
        let mut bob = b.client();
        let ready = bob.identify(&user);
        assert_eq!(ready["cluster"], "ok", "round {round}: {ready}");
        let id = format!("m{round}");
        let ack = alice.request(json!({"op": "send", "id": id, "to": user, "data": round}));
        assert_eq!(
            ack,
            json!({"op": "ack", "id": id, "status": "delivered", "conns": 1}),
            "round {round}: the send right after {user}'s ready"
        );
        bob.set_read_timeout(Duration::from_secs(5));
        let got = bob.recv_json();
        assert_eq!(
            got,
            json!({"op": "message", "from": "alice", "data": round}),
            "round {round}: {user} must get the message live"
        );
        bob.close();
    }
}

#[test]
fn ready_on_a_single_node_has_no_cluster_field() {
    let node = Node::start(NodeOpts::new());
    let mut c = node.client();
    let ready = c.identify("solo");
    assert!(ready.get("cluster").is_none(), "{ready}");
}
