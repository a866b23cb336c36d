//! End-to-end tests of the in-process path (plan, worker, scenario, report) against a throwaway
//! tokio-tungstenite echo server on loopback, so the pipeline is checked without a gateway.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;

use crate::{
    cli::{Cli, Command, Options, Scenario},
    coordinator,
};

/// Starts an echo server; returns its URL.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("ws://{addr}/")
}

/// Options as the command line would give them.
fn options(scenario: &str, url: &str, extra: &[&str]) -> Options {
    let mut args = vec!["loadtest", scenario, "--url", url, "--raw", "--quiet"];
    args.extend_from_slice(extra);
    match clap::Parser::try_parse_from(args).map(|c: Cli| c.command) {
        Ok(Command::Echo(o) | Command::Idle(o) | Command::Churn(o) | Command::Ramp(o)) => o,
        other => panic!("{other:?}"),
    }
}

async fn run(s: Scenario, opts: Options) -> crate::report::Report {
    let targets = opts.validate(s).unwrap();
    coordinator::run(s, opts, targets).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_echo_checks_every_message() {
    let url = echo_server().await;
    let opts = options(
        "echo",
        &url,
        &[
            "--connections",
            "8",
            "--window",
            "4",
            "--duration",
            "0.5",
            "--size",
            "100",
        ],
    );
    let r = run(Scenario::Echo, opts).await;
    assert_eq!((r.connected, r.connections), (8, 8), "{r:?}");
    assert!(
        r.messages_received > 0 && r.messages_received == r.messages_sent,
        "{r:?}"
    );
    assert_eq!((r.lost, r.duplicated, r.out_of_order), (0, 0, 0));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.latency_ms.count, r.messages_received);
    assert_eq!(r.exit_code(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_churn_and_ramp_complete() {
    let url = echo_server().await;
    let r = run(
        Scenario::Idle,
        options("idle", &url, &["--connections", "20", "--duration", "0.2"]),
    )
    .await;
    assert_eq!((r.connected, r.exit_code()), (20, 0), "{r:?}");
    let r = run(
        Scenario::Churn,
        options("churn", &url, &["--rate", "50", "--duration", "0.3"]),
    )
    .await;
    assert!(r.connected > 0 && r.connected == r.connections, "{r:?}");
    assert_eq!(r.exit_code(), 0);
    let r = run(
        Scenario::Ramp,
        options(
            "ramp",
            &url,
            &["--rate", "1000", "--connections", "30", "--duration", "5"],
        ),
    )
    .await;
    assert_eq!(r.held_at_first_failure, Some(30), "{r:?}");
    assert_eq!(r.first_failure, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_a_failure() {
    // Bind then drop: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/");
    let r = run(
        Scenario::Idle,
        options("idle", &url, &["--connections", "3", "--duration", "0.1"]),
    )
    .await;
    assert_eq!(r.connected, 0);
    assert_eq!(r.errors.get("refused"), Some(&3), "{:?}", r.errors);
    assert_eq!(r.exit_code(), 1);
}
