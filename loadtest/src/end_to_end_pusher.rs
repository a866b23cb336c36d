//! End-to-end tests of `--protocol pusher` against a small Pusher server made here: the WebSocket side
//! (`/app/<key>`, connection_established, public subscriptions, a `pusher:ping` after each subscription
//! that must be answered) and the HTTP API on a port of its own (signed triggers checked with the
//! gateway's verifier, events relayed to the channel's subscribers before the answer).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    cli::{Cli, Command, Scenario},
    coordinator,
};

/// The fake server's state: subscribers per channel, and the pongs it received.
#[derive(Default)]
struct Server {
    channels: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<String>>>>,
    pongs: AtomicU64,
}

/// One WebSocket client of the fake server.
async fn client(server: Arc<Server>, stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let hello = json!({"event": "pusher:connection_established",
        "data": json!({"socket_id": "1.1", "activity_timeout": 120}).to_string()});
    if ws.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(text) => if ws.send(Message::text(text)).await.is_err() { return },
                None => return,
            },
            msg = ws.next() => {
                let Some(Ok(Message::Text(text))) = msg else {
                    match msg {
                        Some(Ok(_)) => continue,
                        _ => return,
                    }
                };
                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                match v["event"].as_str() {
                    Some("pusher:subscribe") => {
                        let channel = v["data"]["channel"].as_str().unwrap_or_default().to_string();
                        server.channels.lock().unwrap().entry(channel.clone()).or_default().push(tx.clone());
                        let ok = json!({"event": "pusher_internal:subscription_succeeded",
                            "channel": channel, "data": "{}"});
                        let ping = json!({"event": "pusher:ping", "data": "{}"});
                        for frame in [ok, ping] {
                            if ws.send(Message::text(frame.to_string())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some("pusher:pong") => {
                        server.pongs.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One HTTP API request: checks the signature, relays the event, answers.
async fn api_request(server: Arc<Server>, mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            break (head, buf[end + 4..end + 4 + len].to_vec());
        }
    };
    let target = head.split(' ').nth(1).unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(&str, &str)> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = shards::pusher::signature::verify_api_request(
        ("key-1", "secret-1"),
        ("POST", path),
        &params,
        &body,
        now,
    );
    let status = if signed.is_err() || path != "/apps/app-1/events" {
        "401 Unauthorized"
    } else {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let channels = server.channels.lock().unwrap();
        for c in v["channels"].as_array().into_iter().flatten() {
            let c = c.as_str().unwrap_or_default();
            let frame = json!({"event": v["name"], "channel": c, "data": v["data"]}).to_string();
            for tx in channels.get(c).into_iter().flatten() {
                let _ = tx.send(frame.clone());
            }
        }
        "200 OK"
    };
    let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
    let _ = stream.write_all(answer.as_bytes()).await;
}

/// Starts the fake server; returns it, its ws:// URL and its HTTP API's http:// URL.
async fn pusher_server() -> (Arc<Server>, String, String) {
    let server = Arc::new(Server::default());
    let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let urls = (
        format!("ws://{}", ws.local_addr().unwrap()),
        format!("http://{}", api.local_addr().unwrap()),
    );
    let s = server.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = ws.accept().await {
            tokio::spawn(client(s.clone(), stream));
        }
    });
    let s = server.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = api.accept().await {
            tokio::spawn(api_request(s.clone(), stream));
        }
    });
    (server, urls.0, urls.1)
}

/// Runs `loadtest <scenario> --protocol pusher --url <url> --quiet <extra>` in this process.
async fn run(s: Scenario, url: &str, extra: &[&str]) -> crate::report::Report {
    let mut args = vec![
        "loadtest",
        s.name(),
        "--url",
        url,
        "--protocol",
        "pusher",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let opts = match clap::Parser::try_parse_from(args).map(|c: Cli| c.command) {
        Ok(Command::Idle(o) | Command::Fanout(o) | Command::Churn(o)) => o,
        other => panic!("{other:?}"),
    };
    let targets = opts.validate(s).unwrap();
    coordinator::run(s, opts, targets).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_fanout_checks_every_delivery() {
    let (server, url, api) = pusher_server().await;
    let extra = [
        "--api-url",
        &api,
        "--connections",
        "20",
        "--rate",
        "50",
        "--duration",
        "1",
    ];
    let r = run(Scenario::Fanout, &url, &extra).await;
    assert_eq!((r.connected, r.connections), (21, 21), "{r:?}");
    assert!(r.messages_sent >= 40, "{r:?}");
    assert_eq!(r.messages_received, 20 * r.messages_sent, "{r:?}");
    assert_eq!((r.lost, r.duplicated, r.out_of_order), (0, 0, 0));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.settings["protocol"], "pusher");
    // Every subscriber answered the ping that followed its subscription.
    assert!(server.pongs.load(Relaxed) >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_idle_and_churn_subscribe() {
    let (server, url, _) = pusher_server().await;
    let extra = [
        "--connections",
        "12",
        "--channels",
        "3",
        "--duration",
        "0.3",
    ];
    let r = run(Scenario::Idle, &url, &extra).await;
    assert_eq!((r.connected, r.exit_code()), (12, 0), "{r:?}");
    let subscribed: Vec<usize> = {
        let channels = server.channels.lock().unwrap();
        (0..3)
            .map(|k| channels[&format!("fanout-{k}")].len())
            .collect()
    };
    assert_eq!(subscribed, [4, 4, 4]);
    assert_eq!(r.settings["channels"], 3);
    let extra = ["--rate", "50", "--duration", "0.3", "--channel", "churn"];
    let r = run(Scenario::Churn, &url, &extra).await;
    assert!(r.connected > 0 && r.connected == r.connections, "{r:?}");
    assert_eq!(r.exit_code(), 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badly_signed_trigger_fails_the_fanout_set_up() {
    let (_server, url, api) = pusher_server().await;
    let extra = [
        "--api-url",
        &api,
        "--connections",
        "2",
        "--duration",
        "0.2",
        "--pusher-secret",
        "wrong",
    ];
    let r = run(Scenario::Fanout, &url, &extra).await;
    assert_eq!(r.connected, 2, "{r:?}");
    assert_eq!(r.errors.get("http_401"), Some(&1), "{:?}", r.errors);
    assert_eq!(r.exit_code(), 1);
}
