//! Interoperability: drives the gateway with an independent WebSocket implementation (Python's
//! `websockets` sync client, see tests/clients/python_client.py). Skipped outside CI when the package is
//! missing; `GATEWAY_TEST_PYTHON` selects the interpreter (default `python3`).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Node, NodeOpts};

fn python() -> String {
    std::env::var("GATEWAY_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

#[test]
fn python_websockets_client_round_trip() {
    if !python_available("python_websockets_client_round_trip") {
        return;
    }
    let node = Node::start(NodeOpts::new().shards(2));
    run_script("python_client.py", &[format!("ws://{}", node.ws_addr)]);
}

/// True when the Python `websockets` sync client can be imported; panics under CI when it cannot.
fn python_available(test: &str) -> bool {
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import websockets.sync.client"])
        .output();
    if matches!(&probe, Ok(out) if out.status.success()) {
        return true;
    }
    let why = match &probe {
        Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
        Err(e) => e.to_string(),
    };
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but `{py} -c 'import websockets.sync.client'` failed: {why}");
    }
    eprintln!("SKIP {test}: `websockets` not importable by {py}: {why}");
    false
}

#[test]
fn python_application_in_jwt_mode() {
    if !python_available("python_application_in_jwt_mode") {
        return;
    }
    let secret = "python-authz-secret";
    let node = Node::start(
        NodeOpts::new()
            .set_str("auth.jwt_hs256_secret", secret)
            .set(
                "channels.namespaces",
                r#"[{ pattern = "chat:*", subscribe = "grant" }]"#,
            ),
    );
    run_script(
        "python_authz.py",
        &[format!("ws://{}", node.ws_addr), secret.to_string()],
    );
}

/// Runs tests/clients/`script` with `args`; asserts it exits 0 and prints `<name>: OK`.
fn run_script(script: &str, args: &[String]) {
    let py = python();
    let name = script.trim_end_matches(".py");
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(&py)
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {py} {path}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within 60 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    assert!(
        status.success(),
        "{name} failed ({status}):\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("{name}: OK")),
        "{name} did not report OK:\n{stdout}\n{stderr}"
    );
}
