//! Abuse: one address opening many connections. `limits.max_connections_per_ip` is counted over every
//! shard of the node: past it the upgrade completes and the server closes with 1013, reason "too many
//! connections from this address", metric reason `ip_limit`. Other addresses are not affected, a close
//! frees a slot, the count leaves nothing behind, and the node's memory stays bounded.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::raw::{FIN, RawWs, TEXT, assert_rss_within};
use common::{IO_TIMEOUT, Node, NodeOpts};
use socket2::{Domain, Socket, Type};

/// The cap under test. With 16 connections the kernel's SO_REUSEPORT hash puts them all on one of the
/// two shards with a probability of 2^-15, so the cap is exercised across shards.
const CAP: usize = 16;
/// Connections tried past the cap.
const OVER: usize = 4;

/// A TCP connection to the node from the local address `src` (any 127.0.0.0/8 address is local).
fn tcp_from(node: &Node, src: &str) -> TcpStream {
    let src: IpAddr = src.parse().expect("source address");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(src, 0).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    socket
        .connect_timeout(&node.ws_addr.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect from {src}: {e}"));
    socket.into()
}

/// An identified connection from `src`; returns it with the shard that holds it.
fn identified_from(node: &Node, src: &str, user: &str) -> (RawWs, u64) {
    let mut ws = RawWs::upgrade(tcp_from(node, src));
    let ready = ws.request(&format!(r#"{{"op":"identify","user":"{user}"}}"#));
    assert_eq!(ready["op"], "ready", "{src} {user}: {ready}");
    let shard = ready["shard"].as_u64().expect("ready.shard");
    (ws, shard)
}

/// A connection from `src` that must be refused by the cap: 101, then close 1013 with the reason text.
fn refused_from(node: &Node, src: &str) {
    let mut ws = RawWs::upgrade(tcp_from(node, src));
    let reason = ws.expect_close_code(1013);
    assert_eq!(reason, "too many connections from this address");
    // It was never served: an identify sent now goes nowhere.
    let _ = ws.send_frame(FIN | TEXT, br#"{"op":"identify","user":"late"}"#);
}

#[test]
fn the_per_ip_cap_holds_across_shards_and_frees_on_close() {
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .set("limits.max_connections_per_ip", CAP),
    );
    let baseline = node.rss_bytes();

    let mut held: Vec<RawWs> = Vec::new();
    let mut shards = BTreeSet::new();
    for i in 0..CAP {
        let (ws, shard) = identified_from(&node, "127.0.0.1", &format!("local{i}"));
        held.push(ws);
        shards.insert(shard);
    }
    assert_eq!(
        shards.len(),
        2,
        "all {CAP} connections landed on one shard; the cross-shard count was not exercised"
    );
    for _ in 0..OVER {
        refused_from(&node, "127.0.0.1");
    }
    // Another address is counted apart.
    let (mut other, _) = identified_from(&node, "127.0.0.2", "other");
    other.ping_pong("other");
    // The held connections still work.
    for (i, ws) in held.iter_mut().enumerate() {
        ws.ping_pong(&format!("held{i}"));
    }
    let refused = node.wait_metric(
        "gateway_connections_closed_total",
        &[("reason", "ip_limit")],
        OVER as f64,
        Duration::from_secs(5),
    );
    assert_eq!(refused, OVER as f64, "ip_limit closes counted");

    // Closing one frees one slot, and only one.
    held.pop().expect("a held connection").close();
    node.wait_metric(
        "gateway_connections_open",
        &[],
        CAP as f64, // CAP - 1 from 127.0.0.1, one from 127.0.0.2
        Duration::from_secs(5),
    );
    let (ws, _) = identified_from(&node, "127.0.0.1", "again");
    held.push(ws);
    refused_from(&node, "127.0.0.1");

    // Everything closed: the address's count is back to 0, so a full set is admitted again.
    for ws in held.drain(..) {
        ws.close();
    }
    other.close();
    let open = node.wait_metric(
        "gateway_connections_open",
        &[],
        0.0,
        Duration::from_secs(10),
    );
    assert_eq!(
        open, 0.0,
        "connections still open after every client closed"
    );
    for i in 0..CAP {
        held.push(identified_from(&node, "127.0.0.1", &format!("second{i}")).0);
    }
    refused_from(&node, "127.0.0.1");
    let refused = node.wait_metric(
        "gateway_connections_closed_total",
        &[("reason", "ip_limit")],
        (OVER + 2) as f64,
        Duration::from_secs(5),
    );
    assert_eq!(refused, (OVER + 2) as f64);

    let loaded = node.rss_bytes();
    // A few dozen connections and a per-IP table of two entries: nothing close to this.
    assert_rss_within(
        &format!("ip cap, with {CAP} held and {} refused", OVER + 2),
        baseline,
        loaded,
        16,
    );
}
