//! Direct messages across nodes: which node each connection talks to, and the probe that holds a
//! sender back until its receiver can be reached through Redis.
//!
//! crossnode is dm (connection 2p sends to 2p + 1) over N gateway nodes sharing one Redis. Every
//! message must take the cross-node path (presence lookup, publish to the receiver's node, its ack
//! published back), so no receiver may share its sender's node. [`node_of`] decides from the global
//! connection index alone, so every worker process agrees whatever slice of the pairs it runs: the
//! sender of pair p is on node p mod N, its receiver on the next one, (p + 1) mod N. Senders and
//! receivers are spread evenly, and N pairs or more use every node both ways.
//!
//! A node writes a user's presence to Redis a batch window after `identify`, so a send just after
//! set-up could find the receiver offline. Each sender therefore [`probe`]s its receiver during set-up
//! (a `send` with `{"probe": k}` data, which receivers skip) until the ack says delivered; only then
//! does it count as ready, so `go` finds every cross-node path open.

use std::time::Duration;

use shards::protocol::client;

use super::stream::{self, Reply};
use crate::net::{self, Failure, Ws};

/// The rule of [`node_of`], as the report states it.
pub const PAIRING: &str = "sender of pair p on node p mod N, its receiver on node (p + 1) mod N";

/// Pause between probes while the receiver is not reachable yet.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// The node (index into the `--url`s) of global connection `i` among `nodes`: pairs as in dm, the
/// receiver one node after its sender. With one node, always 0.
pub fn node_of(i: u64, nodes: usize) -> usize {
    let n = nodes.max(1) as u64;
    let (pair, receiver) = (i / 2, i % 2);
    ((pair % n + receiver) % n) as usize
}

/// Sends probes to `to` until one is acked as delivered; fails after [`net::SETUP_TIMEOUT`] with
/// `probe_<last ack>` (`probe_offline`: the receiver never showed up in Redis; `probe_unavailable`: the
/// sender's node could not reach Redis), or at once on any other failure.
pub async fn probe(ws: &mut Ws, to: &str) -> Result<(), Failure> {
    let mut last = String::from("no_ack");
    let probing = async {
        let mut k = 0u64;
        loop {
            let data = format!("{{\"probe\":{k}}}");
            k += 1;
            net::send_text(ws, client::send(None, to, &data)).await?;
            loop {
                match stream::reply(&net::recv(ws).await?) {
                    Reply::Done => return Ok(()),
                    Reply::Failed(kind)
                        if kind == "offline" || kind == "stored" || kind == "unavailable" =>
                    {
                        last = kind;
                        break;
                    }
                    Reply::Failed(kind) => return Err(Failure(kind)),
                    Reply::Other => {}
                    Reply::Bad => return Err(Failure::new("bad_frame")),
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    };
    match tokio::time::timeout(net::SETUP_TIMEOUT, probing).await {
        Ok(r) => r,
        Err(_) => Err(Failure(format!("probe_{last}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::planner::{Overrides, plan};

    /// (sender's node, receiver's node) of every pair among `connections`.
    fn pairs(connections: u64, nodes: usize) -> Vec<(usize, usize)> {
        (0..connections / 2)
            .map(|p| (node_of(2 * p, nodes), node_of(2 * p + 1, nodes)))
            .collect()
    }

    #[test]
    fn every_receiver_is_on_another_node() {
        for nodes in 2..=7 {
            for connections in [2 * nodes as u64, 100, 1_001] {
                for (s, r) in pairs(connections, nodes) {
                    assert_ne!(s, r, "{nodes} nodes, {connections} connections");
                    assert!(s < nodes && r < nodes);
                }
            }
        }
    }

    #[test]
    fn every_node_sends_and_receives_evenly() {
        for nodes in 2..=7 {
            let count = |pick: fn(&(usize, usize)) -> usize| {
                let mut per = vec![0u64; nodes];
                pairs(100 * nodes as u64, nodes)
                    .iter()
                    .for_each(|p| per[pick(p)] += 1);
                per
            };
            // 50 pairs per node: each node has 50 senders and 50 receivers.
            assert_eq!(count(|p| p.0), vec![50; nodes]);
            assert_eq!(count(|p| p.1), vec![50; nodes]);
        }
        // The smallest run validation allows (2 × nodes connections) already uses every node both ways.
        let p = pairs(6, 3);
        let senders: BTreeSet<_> = p.iter().map(|p| p.0).collect();
        let receivers: BTreeSet<_> = p.iter().map(|p| p.1).collect();
        assert_eq!((senders.len(), receivers.len()), (3, 3));
    }

    #[test]
    fn the_pairing_holds_across_worker_processes() {
        // Each worker runs a slice of global indexes; node_of depends on the index only, and slices cut
        // between pairs, so every pair is whole in one worker with its receiver on another node.
        let mut layout = plan(1_000, 20_000, (32768, 60999), Overrides::default());
        layout.processes = 3;
        let mut used = BTreeSet::new();
        for slice in layout.slices(1_000, 2) {
            assert_eq!(slice.start % 2, 0);
            assert_eq!(slice.end % 2, 0);
            for i in slice.step_by(2) {
                let (s, r) = (node_of(i, 2), node_of(i + 1, 2));
                assert_ne!(s, r);
                used.insert(s);
            }
        }
        assert_eq!(used.len(), 2);
    }

    #[test]
    fn one_node_is_always_node_zero() {
        assert!((0..100).all(|i| node_of(i, 1) == 0 && node_of(i, 0) == 0));
    }
}
