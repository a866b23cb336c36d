//! History and resume, end to end: every direct message carries `seq` and `epoch`; a client that
//! disconnects mid-stream and resumes gets everything it missed, in order, before live messages; a gap
//! the history cannot fill is reported (`resumed:false` with a reason), never silent. On one node
//! (the embedded ring) and across two nodes (Redis streams): disconnect from A, resume on B.

mod common;

use common::redis::RedisServer;
use common::scenarios::{KEPT, disconnect_and_resume, read_many, resume, send_many};
use common::{Node, NodeOpts};
use serde_json::json;

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

/// Senders on both nodes at once to one user connected on both nodes: one order on both connections.
#[test]
fn senders_on_two_nodes_make_one_order() {
    let redis = RedisServer::start();
    let opts = || {
        NodeOpts::new()
            .shards(2)
            .cluster(&redis.url())
            .set("limits.rate_limit_per_sec", 0)
    };
    let a = Node::start(opts());
    let b = Node::start(opts());
    common::scenarios::senders_on_two_nodes_make_one_order(&a, &b);
}
