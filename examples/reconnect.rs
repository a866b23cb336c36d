//! A client that stays connected and loses nothing it can get back: it identifies, subscribes, prints
//! what it receives, and follows docs/GUARANTEES.md ("What the client must do"):
//!
//! - it remembers the `epoch`/`seq` of its own stream and of each channel, identifies with `resume`
//!   and subscribes with `since`, so a reconnect replays what it missed;
//! - it drops duplicates by `seq`, and reports every gap the server could not fill (`resumed:false`);
//! - a live message that skips a `seq` means one was lost on the way: it resumes from before the hole
//!   (reconnecting for its own stream, resubscribing for a channel).
//!
//! When the connection ends it reconnects the way docs/PROTOCOL.md asks (the policy is
//! `shards::protocol::reconnect`): after the server's `reconnect_after_ms` hint for a drain's 1012,
//! never for 4010 or 1008, otherwise with full-jitter exponential backoff, reset once a connection
//! has stayed up for a minute.
//!
//!     cargo run --example reconnect -- ws://127.0.0.1:8080/ws alice room:1 room:2
//!
//! Drain the node it is on (`kill -TERM <pid>` or `POST /v1/drain`) and watch it move and resume: with
//! a load balancer in front (deploy/) it lands on another node after the hint. Positions live in
//! memory here; an application that must not lose messages across its own restarts stores them.

use std::{
    collections::HashMap,
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use shards::protocol::reconnect::{Reconnect, after_close};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

/// A connection that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(60);

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Where the client is in one stream: the last `seq` it processed in `epoch` (`None`: nothing yet,
/// or a stream without history).
#[derive(Clone, Debug, Default)]
struct Position {
    epoch: Option<String>,
    seq: u64,
}

impl Position {
    /// The `resume` / `since` object that asks for everything after this position.
    fn request(&self) -> Value {
        match &self.epoch {
            Some(epoch) => json!({"epoch": epoch, "seq": self.seq}),
            None => json!({}),
        }
    }

    /// Takes the position a `ready` or `subscribed` reply announces: the replay that follows carries
    /// `seq - replayed + 1 ..= seq`. Reports what the server could not replay.
    fn restart_from(&mut self, reply: &Value, stream: &str) {
        let seq = reply["seq"].as_u64().unwrap_or(0);
        let replayed = reply["replayed"].as_u64().unwrap_or(0);
        if reply["resumed"] == false {
            let reason = reply["reason"].as_str().unwrap_or("?");
            match reason {
                "no_history" => {}
                _ => eprintln!(
                    "{stream}: messages after {}/{} are lost ({reason}); the {replayed} still kept \
                     follow",
                    self.epoch.as_deref().unwrap_or("-"),
                    self.seq,
                ),
            }
        }
        self.epoch = reply["epoch"].as_str().map(str::to_string);
        self.seq = seq.saturating_sub(replayed);
    }
}

/// What to do with one numbered message.
enum Verdict {
    /// New and next in line: process it.
    Next,
    /// Already processed (a replay overlapping what was read live).
    Duplicate,
    /// A `seq` was skipped, or the stream started again unannounced: resume from the position.
    Hole,
}

/// Judges a message of `epoch`/`seq` against `pos`, moving `pos` on when it is the next one.
fn judge(pos: &mut Position, epoch: Option<&str>, seq: Option<u64>) -> Verdict {
    let (Some(epoch), Some(seq)) = (epoch, seq) else {
        return Verdict::Next; // unnumbered (no history, or Redis down): at most once
    };
    if pos.epoch.as_deref() != Some(epoch) {
        return Verdict::Hole;
    }
    if seq <= pos.seq {
        return Verdict::Duplicate;
    }
    if seq > pos.seq + 1 {
        return Verdict::Hole;
    }
    pos.seq = seq;
    Verdict::Next
}

/// The client's memory across connections: its own stream and each channel's.
struct Client {
    user: String,
    own: Position,
    channels: HashMap<String, Position>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(user)) = (args.next(), args.next()) else {
        eprintln!("usage: reconnect <ws url> <user> [channel ...]");
        std::process::exit(2);
    };
    let mut client = Client {
        user,
        own: Position::default(),
        channels: args.map(|c| (c, Position::default())).collect(),
    };
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        let (code, reason) = match client.session(&url) {
            Ok(end) => end,
            Err(e) => {
                eprintln!("connection failed: {e}");
                (None, String::new())
            }
        };
        if started.elapsed() >= STABLE {
            attempt = 0;
        }
        if code == Some(1000) && reason == "hole" {
            continue; // our own choice: resume at once
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

impl Client {
    /// One connection: identify (resuming), subscribe (with `since`), print until it ends; returns the
    /// close code and reason.
    fn session(&mut self, url: &str) -> Result<(Option<u16>, String), String> {
        let (mut ws, _) = tungstenite::connect(url).map_err(|e| e.to_string())?;
        send(
            &mut ws,
            json!({"op": "identify", "id": "ident", "user": self.user, "resume": self.own.request()}),
        )?;
        let channels: Vec<String> = self.channels.keys().cloned().collect();
        for channel in &channels {
            self.subscribe(&mut ws, channel)?;
        }
        // Channels being resubscribed after a hole: their live messages wait for the replay.
        let mut resubscribing: Vec<String> = Vec::new();
        loop {
            let text = match ws.read() {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(frame)) => {
                    let _ = ws.flush();
                    return Ok(match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_string()),
                        None => (None, String::new()),
                    });
                }
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("connection lost: {e}");
                    return Ok((None, String::new()));
                }
            };
            let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
            match frame["op"].as_str() {
                Some("ready") => {
                    eprintln!("ready on node {}", frame["node"]);
                    self.own.restart_from(&frame, "own stream");
                }
                Some("ack") if frame["status"] == "subscribed" => {
                    let id = frame["id"].as_str().unwrap_or_default();
                    if let Some(channel) = id.strip_prefix("sub:")
                        && let Some(pos) = self.channels.get_mut(channel)
                    {
                        pos.restart_from(&frame, channel);
                        resubscribing.retain(|c| c != channel);
                    }
                }
                Some("message") => {
                    let epoch = frame["epoch"].as_str();
                    let seq = frame["seq"].as_u64();
                    let Some(channel) = frame["channel"].as_str() else {
                        match judge(&mut self.own, epoch, seq) {
                            Verdict::Next => println!("{text}"),
                            Verdict::Duplicate => {}
                            Verdict::Hole => {
                                eprintln!("own stream: hole before {seq:?}; resuming");
                                let _ = ws.close(Some(tungstenite::protocol::CloseFrame {
                                    code: 1000.into(),
                                    reason: "hole".into(),
                                }));
                                let _ = ws.flush();
                                return Ok((Some(1000), "hole".into()));
                            }
                        }
                        continue;
                    };
                    if resubscribing.iter().any(|c| c == channel) {
                        continue; // the replay will carry it
                    }
                    let Some(pos) = self.channels.get_mut(channel) else {
                        continue;
                    };
                    match judge(pos, epoch, seq) {
                        Verdict::Next => println!("{text}"),
                        Verdict::Duplicate => {}
                        Verdict::Hole => {
                            eprintln!("{channel}: hole before {seq:?}; resubscribing");
                            let channel = channel.to_string();
                            send(
                                &mut ws,
                                json!({"op": "unsubscribe", "id": format!("unsub:{channel}"), "channel": channel}),
                            )?;
                            self.subscribe(&mut ws, &channel)?;
                            resubscribing.push(channel);
                        }
                    }
                }
                _ => println!("{text}"),
            }
        }
    }

    /// Subscribes to `channel` from its remembered position.
    fn subscribe(&self, ws: &mut Ws, channel: &str) -> Result<(), String> {
        let since = self.channels.get(channel).cloned().unwrap_or_default();
        send(
            ws,
            json!({"op": "subscribe", "id": format!("sub:{channel}"), "channel": channel, "since": since.request()}),
        )
    }
}

fn send(ws: &mut Ws, v: Value) -> Result<(), String> {
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
