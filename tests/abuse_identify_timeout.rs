//! Abuse: an unauthenticated flood. 2,000 connections complete the upgrade and never identify; each is
//! closed with 4001 ("identify timeout") at `auth.timeout_ms`, the metric counts them, the node's
//! memory stays within a per-connection bound while they are held and drops back once they are gone,
//! and the node still serves.

mod common;

use std::time::{Duration, Instant};

use common::raw::{RawWs, mib, raise_nofile};
use common::{Node, NodeOpts};

/// Connections in the flood.
const CONNS: usize = 2_000;
/// The identify timeout under test.
const AUTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Slack past the timeout for the close to reach the client.
const CLOSE_SLACK: Duration = Duration::from_secs(10);
/// Node memory allowed per upgraded, anonymous connection (measured figure in the test's output; the
/// bound leaves a wide margin).
const MAX_BYTES_PER_CONN: u64 = 8 * 1024;

#[test]
fn anonymous_connections_are_closed_with_4001_at_the_auth_timeout() {
    let nofile = raise_nofile(20_000);
    if nofile < CONNS as u64 + 200 {
        eprintln!(
            "SKIPPED: the open-file limit is {nofile}; this test needs {}",
            CONNS + 200
        );
        return;
    }
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .set("auth.timeout_ms", AUTH_TIMEOUT.as_millis()),
    );
    let baseline = node.rss_bytes();

    let started = Instant::now();
    let mut flood: Vec<(RawWs, Instant)> = (0..CONNS)
        .map(|_| {
            let ws = RawWs::connect(node.ws_addr);
            (ws, Instant::now())
        })
        .collect();
    let opened_in = started.elapsed();
    let loaded = node.rss_bytes();
    let open = node.metric_sum("gateway_connections_open", &[]);
    assert!(
        opened_in < AUTH_TIMEOUT,
        "opening {CONNS} took {opened_in:?}, longer than the timeout under test"
    );
    assert_eq!(open, CONNS as f64, "connections held at once");

    for (i, (ws, opened)) in flood.iter_mut().enumerate() {
        let reason = ws.expect_close_code(4001);
        assert_eq!(reason, "identify timeout", "#{i}");
        let after = opened.elapsed();
        assert!(
            after < AUTH_TIMEOUT + CLOSE_SLACK,
            "#{i} closed {after:?} after its upgrade"
        );
    }
    // The clients go; the server finishes each close on their EOF.
    drop(flood);
    let gone = node.wait_metric(
        "gateway_connections_open",
        &[],
        0.0,
        Duration::from_secs(10),
    );
    assert_eq!(gone, 0.0, "connections still counted open");
    let closed = node.metric_sum(
        "gateway_connections_closed_total",
        &[("reason", "identify_timeout")],
    );
    assert_eq!(closed, CONNS as f64, "identify_timeout closes counted");
    let after = node.rss_bytes();
    eprintln!(
        "identify timeout: RSS baseline {}, {CONNS} anonymous {} ({} B/conn), after {}",
        mib(baseline),
        mib(loaded),
        loaded.saturating_sub(baseline) / CONNS as u64,
        mib(after)
    );
    assert!(
        loaded <= baseline + MAX_BYTES_PER_CONN * CONNS as u64,
        "{CONNS} anonymous connections took {} over the baseline {}",
        mib(loaded - baseline),
        mib(baseline)
    );
    assert!(
        after <= loaded + 4 * 1024 * 1024,
        "RSS kept growing after the flood was closed: {} then {}",
        mib(loaded),
        mib(after)
    );

    let mut c = node.identified("after-the-flood");
    c.ping_pong("still-serving");
}
