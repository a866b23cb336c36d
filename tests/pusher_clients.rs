//! Pusher conformance with the real client libraries from the registries: pusher-js 8 (its Node
//! build), laravel-echo 2 and the `pusher` 5 server SDK (tests/clients/pusher/conformance.js, pinned by
//! its package-lock.json). Needs `node` and `npm ci` in tests/clients/pusher (scripts/test runs it);
//! skipped outside CI when either is missing.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::redis::RedisServer;
use common::{Node, NodeOpts};

/// The conformance driver's directory.
fn driver_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/pusher")
}

/// True when node and the driver's packages are there; panics under CI when they are not.
fn node_available(test: &str) -> bool {
    let node = Command::new("node").arg("--version").output();
    let installed = driver_dir().join("node_modules/pusher-js").exists();
    if matches!(&node, Ok(out) if out.status.success()) && installed {
        return true;
    }
    let why = if installed {
        "`node --version` failed".to_owned()
    } else {
        "tests/clients/pusher/node_modules is missing (run `npm ci` there, or scripts/test)"
            .to_owned()
    };
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but the Pusher clients cannot run: {why}");
    }
    eprintln!("SKIP {test}: {why}");
    false
}

/// Runs the driver's `cases` against `node` (and `node_b` for the cross-node cases); asserts every
/// case reports `ok`.
fn run_cases(node: &Node, node_b: Option<&Node>, app: (&str, &str, &str), cases: &[&str]) {
    run_cases_with(node, node_b, app, cases, &mut Vec::new());
}

/// [`run_cases`] with extra environment variables for the driver.
fn run_cases_with(
    node: &Node,
    node_b: Option<&Node>,
    app: (&str, &str, &str),
    cases: &[&str],
    env: &mut Vec<(&str, String)>,
) {
    let mut cmd = Command::new("node");
    for (k, v) in env.drain(..) {
        cmd.env(k, v);
    }
    if let Some(b) = node_b {
        cmd.env("GATEWAY_PORT_B", b.ws_addr.port().to_string());
    }
    let out = cmd
        .current_dir(driver_dir())
        .arg("conformance.js")
        .args(cases)
        .env("GATEWAY_HOST", node.ws_addr.ip().to_string())
        .env("GATEWAY_PORT", node.ws_addr.port().to_string())
        .env("PUSHER_APP_ID", app.0)
        .env("PUSHER_KEY", app.1)
        .env("PUSHER_SECRET", app.2)
        .output()
        .expect("run node conformance.js");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for case in cases {
        let ok = stdout
            .lines()
            .any(|l| l == format!("ok {case}") || l.starts_with(&format!("ok {case} ")));
        assert!(
            ok,
            "case {case} did not pass:\n{stdout}\n{stderr}\nnode log:\n{}",
            node.stderr_tail(4000)
        );
    }
    assert!(out.status.success(), "driver failed:\n{stdout}\n{stderr}");
}

#[test]
fn pusher_js_echo_and_the_server_sdk_on_one_node() {
    if !node_available("pusher_js_echo_and_the_server_sdk_on_one_node") {
        return;
    }
    let node = Node::start(
        NodeOpts::new()
            .shards(2)
            .env("GATEWAY_PUSHER_APPS", "app-1:key-1:secret-1"),
    );
    let cases = [
        "connect",
        "public",
        "private_ok",
        "private_bad",
        "batch",
        "exclusion",
        "unknown_key",
        "bad_signature_http",
        "echo_public",
        "presence",
        "presence_bad",
        "client_events",
        "client_events_public",
        "client_rate",
        "signin_send_to_user",
        "terminate",
        "queries",
    ];
    run_cases(&node, None, ("app-1", "key-1", "secret-1"), &cases);
}

#[test]
fn the_python_server_sdk_triggers_and_queries() {
    if !python_sdk_available() {
        return;
    }
    // The Python SDK takes numeric app ids only, as Pusher issues them.
    let node = Node::start(NodeOpts::new().env("GATEWAY_PUSHER_APPS", "1001:key-1:secret-1"));
    let py = std::env::var("GATEWAY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&py)
        .current_dir(driver_dir())
        .arg("sdk_python.py")
        .args([
            node.ws_addr.ip().to_string(),
            node.ws_addr.port().to_string(),
        ])
        .args(["1001", "key-1", "secret-1"])
        .output()
        .expect("run sdk_python.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("sdk_python: OK"),
        "sdk_python.py failed:\n{stdout}\n{stderr}\nnode log:\n{}",
        node.stderr_tail(4000)
    );
}

/// True when Python can import the `pusher` SDK and `websockets`; panics under CI when it cannot.
fn python_sdk_available() -> bool {
    let py = std::env::var("GATEWAY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&py)
        .args(["-c", "import pusher, websockets.sync.client"])
        .output();
    if matches!(&probe, Ok(out) if out.status.success()) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but `{py} -c 'import pusher'` failed: {probe:?}");
    }
    eprintln!("SKIP the_python_server_sdk_triggers_and_queries: the pusher package is missing");
    false
}

#[test]
fn the_node_sdk_validates_every_webhook_the_gateway_posts() {
    if !node_available("the_node_sdk_validates_every_webhook_the_gateway_posts") {
        return;
    }
    // A free port for the driver's receiver: bound, then released for the driver to take.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let apps = format!(
        r#"[{{ id = "app-1", key = "key-1", secret = "secret-1", webhooks = [{{ url = "http://127.0.0.1:{port}/hooks" }}] }}]"#
    );
    let node = Node::start(
        NodeOpts::new()
            .set("pusher.apps", apps)
            .set("webhook_delivery.grace_ms", 300),
    );
    let mut cmd_env = vec![("WEBHOOK_PORT", port.to_string())];
    run_cases_with(
        &node,
        None,
        ("app-1", "key-1", "secret-1"),
        &["webhooks"],
        &mut cmd_env,
    );
}

#[test]
fn pusher_js_and_the_server_sdk_across_two_nodes_on_one_redis() {
    if !node_available("pusher_js_and_the_server_sdk_across_two_nodes_on_one_redis") {
        return;
    }
    let redis = RedisServer::start();
    let start = || {
        Node::start(
            NodeOpts::new()
                .shards(2)
                .cluster(&redis.url())
                .env("GATEWAY_PUSHER_APPS", "app-1:key-1:secret-1"),
        )
    };
    let (a, b) = (start(), start());
    let cases = [
        "cross_trigger",
        "cross_presence",
        "cross_client_events",
        "cross_send_to_user",
    ];
    run_cases(&a, Some(&b), ("app-1", "key-1", "secret-1"), &cases);
}
