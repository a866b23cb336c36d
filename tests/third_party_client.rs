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
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import websockets.sync.client"])
        .output();
    let available = matches!(&probe, Ok(out) if out.status.success());
    if !available {
        let why = match &probe {
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but `{py} -c 'import websockets.sync.client'` failed: {why}");
        }
        eprintln!(
            "SKIP python_websockets_client_round_trip: `websockets` not importable by {py}: {why}"
        );
        return;
    }

    let node = Node::start(NodeOpts::new().shards(2));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_client.py"
    );
    let mut child = Command::new(&py)
        .arg(script)
        .arg(format!("ws://{}", node.ws_addr))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {py} {script}: {e}"));
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
            panic!("python client did not finish within 60 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    assert!(
        status.success(),
        "python client failed ({status}):\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("python_client: OK"),
        "python client did not report OK:\n{stdout}\n{stderr}"
    );
}
