//! A client that stays connected: it identifies, subscribes, prints what it receives, and when the
//! connection ends reconnects the way docs/PROTOCOL.md asks (the policy is
//! `shards::protocol::reconnect`): after the server's `reconnect_after_ms` hint for a drain's 1012,
//! never for 4010 or 1008, otherwise with full-jitter exponential backoff, reset once a connection
//! has stayed up for a minute. After each reconnect it identifies again and resubscribes its channels,
//! which restores everything protocol v1 keeps per connection.
//!
//!     cargo run --example reconnect -- ws://127.0.0.1:8080/ws alice room:1 room:2
//!
//! Drain the node it is on (`kill -TERM <pid>` or `POST /v1/drain`) and watch it move: with a load
//! balancer in front (deploy/) it lands on another node after the hint.

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use shards::protocol::reconnect::{Reconnect, after_close};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

/// A connection that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(60);

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(user)) = (args.next(), args.next()) else {
        eprintln!("usage: reconnect <ws url> <user> [channel ...]");
        std::process::exit(2);
    };
    let channels: Vec<String> = args.collect();
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        let (code, reason) = match session(&url, &user, &channels) {
            Ok(end) => end,
            Err(e) => {
                eprintln!("connection failed: {e}");
                (None, String::new())
            }
        };
        if started.elapsed() >= STABLE {
            attempt = 0;
        }
        match after_close(code, &reason, attempt, unit_random()) {
            Reconnect::Stop => {
                eprintln!("closed with {code:?} {reason:?}: not reconnecting");
                return;
            }
            Reconnect::After(delay) => {
                eprintln!("closed with {code:?} {reason:?}: reconnecting in {delay:?}");
                std::thread::sleep(delay);
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// One connection: identify, subscribe, print until it ends; returns the close code and reason.
fn session(url: &str, user: &str, channels: &[String]) -> Result<(Option<u16>, String), String> {
    let (mut ws, _) = tungstenite::connect(url).map_err(|e| e.to_string())?;
    request(
        &mut ws,
        json!({"op": "identify", "id": "ident", "user": user}),
    )?;
    for channel in channels {
        request(
            &mut ws,
            json!({"op": "subscribe", "id": format!("sub:{channel}"), "channel": channel}),
        )?;
    }
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                match frame["op"].as_str() {
                    Some("ready") => eprintln!("ready on node {}", frame["node"]),
                    _ => println!("{text}"),
                }
            }
            Ok(Message::Close(frame)) => {
                let _ = ws.flush();
                return Ok(match frame {
                    Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_string()),
                    None => (None, String::new()),
                });
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("connection lost: {e}");
                return Ok((None, String::new()));
            }
        }
    }
}

fn request(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>, v: Value) -> Result<(), String> {
    ws.send(Message::text(v.to_string()))
        .map_err(|e| e.to_string())
}

/// A uniform number in [0, 1) from the clock (enough to spread reconnects; no crate needed).
fn unit_random() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mixed = nanos.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
    mixed as f64 / (1u64 << 53) as f64
}
