//! Process and connection lifecycle: the stdout line and admin endpoints, env overrides, heartbeat
//! timeout (close 4009), and the paced drain on SIGTERM (close 1012 with a reconnect hint, exit 0, readiness off).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{Node, NodeOpts};

#[test]
fn listening_line_and_admin_endpoints() {
    let node = Node::start(NodeOpts::new().shards(2));
    assert!(
        node.listening_line.starts_with("gateway listening ws="),
        "{}",
        node.listening_line
    );
    assert_eq!(node.shards, 2);
    assert!(node.max_connections > 0, "{}", node.listening_line);
    assert!(node.nofile > 0, "{}", node.listening_line);
    assert_eq!(node.ws_addr.ip().to_string(), "127.0.0.1");
    assert_ne!(node.ws_addr.port(), 0);

    let (status, body) = node.http_get("/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = node.http_get("/readyz");
    assert_eq!((status, body.trim()), (200, "ready"));

    let mut c = node.identified("metrics-user");
    c.ping_pong("m");
    let text = node.metrics();
    for name in [
        "gateway_connections_open",
        "gateway_connections_accepted_total",
        "gateway_frames_in_total",
        "gateway_frames_out_total",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    assert!(
        text.contains("shard=\"0\"") && text.contains("shard=\"1\""),
        "metrics must be labelled per shard:\n{text}"
    );
    assert_eq!(node.metric_sum("gateway_connections_open", &[]), 1.0);
    assert!(node.metric_sum("gateway_connections_accepted_total", &[]) >= 1.0);
    assert!(node.metric_sum("gateway_frames_in_total", &[]) >= 2.0);
}

#[test]
fn env_overrides_config_file() {
    let node = Node::start(
        NodeOpts::new()
            .set("heartbeat.interval_ms", 20000)
            .set("heartbeat.timeout_ms", 60000)
            .env("GATEWAY_HEARTBEAT_INTERVAL_MS", "15000"),
    );
    let mut c = node.client();
    let ready = c.identify("env-user");
    assert_eq!(ready["heartbeat_ms"], 15000, "{ready}");
}

#[test]
fn heartbeat_timeout_closes_with_4009() {
    let node = Node::start(
        NodeOpts::new()
            .set("heartbeat.interval_ms", 100)
            .set("heartbeat.timeout_ms", 400),
    );
    let mut silent = node.client();
    let ready = silent.identify("silent");
    assert_eq!(ready["heartbeat_ms"], 100, "{ready}");
    let mut active = node.identified("active");

    // The active client keeps reading (which answers pings) and sending; the silent one does nothing.
    let until = Instant::now() + Duration::from_millis(1000);
    let mut i = 0;
    while Instant::now() < until {
        active.ping_pong(&format!("keepalive{i}"));
        i += 1;
        thread::sleep(Duration::from_millis(50));
    }
    let info = silent.expect_close(4009);
    assert!(
        info.pings >= 1,
        "expected at least one server ping before the 4009 close"
    );
    assert!(
        info.data.is_empty(),
        "unexpected data frames: {:?}",
        info.data
    );
    active.ping_pong("active-still-open");
    assert!(
        active.pings_seen >= 1,
        "active client saw no server ping in 1 s with interval 100 ms"
    );
}

#[test]
fn sigterm_drains_clients_with_1012_and_a_hint_and_exits_0() {
    let mut node = Node::start(NodeOpts::new().shards(2));
    let mut clients: Vec<_> = (0..3)
        .map(|i| node.identified(&format!("term{i}")))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.ping_pong(&format!("before{i}"));
    }
    node.sigterm();
    let mut first = true;
    for c in clients.iter_mut() {
        c.expect_close(1012);
        let reason: serde_json::Value =
            serde_json::from_str(c.close_reason.as_deref().unwrap()).unwrap();
        let hint = reason["reconnect_after_ms"].as_u64().unwrap();
        assert!(hint <= 5000, "{reason}");
        if first {
            first = false;
            // Shutdown is under way: readiness must be off (503) or the admin port already closed.
            match node.try_http_get("/readyz") {
                Ok((status, body)) => {
                    assert_ne!(status, 200, "/readyz still 200 during shutdown: {body:?}")
                }
                Err(e) => eprintln!("/readyz after SIGTERM: {e} (admin port closed)"),
            }
        }
    }
    let status = node.wait_exit(Duration::from_secs(15));
    assert!(
        status.success(),
        "gateway exit status after SIGTERM: {status}"
    );
    assert!(
        node.try_http_get("/readyz").is_err(),
        "admin port still answers after exit"
    );
    // No new connection is accepted after exit.
    assert!(
        common::Client::try_connect(node.ws_addr, "/", Duration::from_secs(2)).is_err(),
        "WebSocket port still accepts after exit"
    );
}
