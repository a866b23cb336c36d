//! Numbered message streams: the dm (and crossnode) sender and fanout publisher, and the receivers that
//! check them.
//!
//! Every message's `data` is `[sender, seq, send time µs]` (the sender's user is also in `from`);
//! after the measuring phase the sender sends `{"end": total}`. A receiver feeds the numbers from its
//! sender to a [`SeqTracker`] and records latency = receive time - send time (CLOCK_MONOTONIC, shared
//! across processes). It stops once it has everything up to the announced total, a short grace after
//! the end marker, or [`DRAIN`] after the measuring phase, whichever comes first.

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use shards::protocol::client::simd_json::prelude::*;
use shards::protocol::client::{self, AckStatus, ServerFrame};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    accounting::SeqTracker,
    cli::Protocol,
    net::{self, Data, Failure, Ws},
    stats::now_us,
    worker::{Ctx, DRAIN, Pacer},
};

/// Unacknowledged messages a sender allows.
pub const WINDOW: u64 = 256;
/// Messages written before a flush.
const BATCH: u64 = 64;
/// How long a receiver waits for stragglers after the end marker.
const GRACE: Duration = Duration::from_secs(1);

/// Subscribes to `channel` and waits for the ack.
pub async fn subscribe(ws: &mut Ws, channel: &str) -> Result<(), Failure> {
    net::send_text(ws, client::subscribe(Some("s"), channel)).await?;
    loop {
        let data = net::recv(ws).await?;
        let mut buf = data.bytes().to_vec();
        match ServerFrame::parse(&mut buf) {
            Ok(ServerFrame::Ack {
                status: AckStatus::Subscribed,
                ..
            }) => return Ok(()),
            Ok(ServerFrame::Error { code, .. }) => {
                return Err(Failure(format!("server_{}", code.as_str())));
            }
            Ok(_) => {}
            Err(_) => return Err(Failure::new("bad_frame")),
        }
    }
}

/// What a frame to a sender says about its sends.
pub enum Reply {
    /// An ack that settles one send.
    Done,
    /// An ack or error that settles one send as a failure of this kind (`offline`, `unavailable`,
    /// `server_<code>`).
    Failed(String),
    /// Not a reply (a message, a pong).
    Other,
    /// Not a server frame this client can read.
    Bad,
}

/// The failure kind an ack status stands for, if it is one.
fn ack_failure(status: AckStatus) -> Option<&'static str> {
    match status {
        AckStatus::Offline => Some("offline"),
        // Kept for a resume, not delivered: the receiver was not connected.
        AckStatus::Stored => Some("stored"),
        // Cluster mode with Redis unreachable: the other nodes could not be asked.
        AckStatus::Unavailable => Some("unavailable"),
        AckStatus::Delivered
        | AckStatus::Published
        | AckStatus::Subscribed
        | AckStatus::Unsubscribed
        | AckStatus::Refreshed => None,
    }
}

/// Reads a frame to a sender.
pub fn reply(data: &Data) -> Reply {
    let mut buf = data.bytes().to_vec();
    match ServerFrame::parse(&mut buf) {
        Ok(ServerFrame::Ack { status, .. }) => match ack_failure(status) {
            Some(kind) => Reply::Failed(kind.into()),
            None => Reply::Done,
        },
        Ok(ServerFrame::Error { code, .. }) => Reply::Failed(format!("server_{}", code.as_str())),
        Ok(_) => Reply::Other,
        Err(_) => Reply::Bad,
    }
}

/// Handles a reply to the sender; returns how many sends it settles (0 or 1).
fn on_reply(ctx: &Ctx, data: &Data) -> u64 {
    match reply(data) {
        Reply::Done => 1,
        Reply::Failed(kind) => {
            ctx.errors.add(kind);
            1
        }
        Reply::Other => 0,
        Reply::Bad => {
            ctx.errors.add("bad_frame");
            0
        }
    }
}

/// Sends numbered messages built by `request` (which wraps message `seq`'s JSON `data`) until
/// `end_at`, at `rate` per second (0: as fast as [`WINDOW`] unacknowledged allows), then the end
/// marker `ends` times (as messages `0..ends`: a publisher to several channels tells each), then waits
/// for the outstanding acks.
#[allow(clippy::too_many_arguments)]
pub async fn send_numbered(
    ctx: &Ctx,
    ws: &mut Ws,
    key: usize,
    sender: u64,
    end_at: Instant,
    rate: f64,
    ends: u64,
    request: impl Fn(u64, &str) -> String,
) -> Result<(), Failure> {
    let mut pacer = Pacer::new(rate);
    let (mut seq, mut unacked) = (0u64, 0u64);
    while Instant::now() < end_at {
        let mut n = 0;
        while n < BATCH && unacked < WINDOW && pacer.due() > 0 {
            let data = format!("[{sender},{seq},{}]", now_us());
            net::feed(ws, Message::text(request(seq, &data))).await?;
            seq += 1;
            unacked += 1;
            n += 1;
            pacer.take(1);
        }
        if n > 0 {
            net::flush(ws).await?;
            ctx.sent.fetch_add(n, Relaxed);
            ctx.rec.sent(key, n);
        }
        let busy = unacked < WINDOW && pacer.due() > 0;
        let wake = if unacked >= WINDOW {
            end_at
        } else {
            pacer.next_at().min(end_at)
        };
        tokio::select! {
            biased;
            r = net::recv(ws) => unacked = unacked.saturating_sub(on_reply(ctx, &r?)),
            _ = std::future::ready(()), if busy => {}
            _ = sleep_until(wake), if !busy => {}
        }
    }
    let end = format!("{{\"end\":{seq}}}");
    for e in 0..ends.max(1) {
        net::feed(ws, Message::text(request(e, &end))).await?;
    }
    net::flush(ws).await?;
    unacked += ends.max(1);
    let give_up = end_at + DRAIN;
    while unacked > 0 {
        tokio::select! {
            r = net::recv(ws) => unacked = unacked.saturating_sub(on_reply(ctx, &r?)),
            _ = sleep_until(give_up) => {
                ctx.errors.add("ack_missing");
                break;
            }
        }
    }
    Ok(())
}

/// What a message from the sender carries.
pub(super) enum Numbered {
    /// Message `seq`, sent at `t_us`.
    Msg { seq: u64, t_us: u64 },
    /// The sender sent `0..total`.
    End { total: u64 },
}

/// Reads a delivered message from `from`; `None` for anything else.
fn numbered(ctx: &Ctx, data: &Data, from: &str) -> Option<Numbered> {
    let mut buf = data.bytes().to_vec();
    let frame = match ServerFrame::parse(&mut buf) {
        Ok(f) => f,
        Err(_) => {
            ctx.errors.add("bad_frame");
            return None;
        }
    };
    let ServerFrame::Message { from: f, data, .. } = frame else {
        if let ServerFrame::Error { code, .. } = frame {
            ctx.errors.add(format!("server_{}", code.as_str()));
        }
        return None;
    };
    if f.as_deref() != Some(from) {
        return None;
    }
    if let Some(arr) = data.as_array()
        && let [_, seq, t] = arr.as_slice()
        && let (Some(seq), Some(t_us)) = (seq.as_u64(), t.as_u64())
    {
        return Some(Numbered::Msg { seq, t_us });
    }
    if let Some(total) = data.get("end").and_then(|v| v.as_u64()) {
        return Some(Numbered::End { total });
    }
    if data.get("probe").is_some() {
        // crossnode: a sender checking that this receiver is reachable before `go`.
        return None;
    }
    ctx.errors.add("bad_data");
    None
}

/// The messages of one channel among a publisher's `n` channels: message `k` goes to channel `k mod
/// n`, so channel `c` gets `c, c + n, c + 2n, ...`, counted here as `0, 1, 2, ...`.
#[derive(Clone, Copy, Debug)]
pub struct Share {
    pub n: u64,
    pub c: u64,
}

impl Share {
    /// This channel's number for the publisher's message `seq`, if it is this channel's.
    fn index(self, seq: u64) -> Option<u64> {
        (seq % self.n == self.c).then_some(seq / self.n)
    }

    /// How many of the publisher's first `total` messages are this channel's.
    fn total(self, total: u64) -> u64 {
        (total + self.n - 1 - self.c) / self.n
    }
}

/// A receiver's state.
struct Receiving {
    /// The channel's share of its publisher's messages (fanout with --channels).
    share: Option<Share>,
    /// What arrived.
    tracker: SeqTracker,
    /// The total the end marker announced.
    total: Option<u64>,
    /// When to give up waiting.
    until: Instant,
}

impl Receiving {
    /// Accounts for one frame.
    fn on_data(&mut self, ctx: &Ctx, key: usize, from: &str, data: &Data) {
        let numbered = match ctx.task.opts.protocol {
            Protocol::V1 => numbered(ctx, data, from),
            Protocol::Pusher => super::publish::numbered(ctx, data, from),
        };
        match numbered {
            Some(Numbered::Msg { seq, t_us }) => {
                let seq = match self.share {
                    None => seq,
                    Some(share) => match share.index(seq) {
                        Some(i) => i,
                        None => {
                            ctx.errors.add("wrong_channel");
                            return;
                        }
                    },
                };
                self.tracker.record(seq);
                ctx.received.fetch_add(1, Relaxed);
                ctx.rec.received(key, now_us().saturating_sub(t_us));
            }
            Some(Numbered::End { total }) => {
                self.total = Some(self.share.map_or(total, |share| share.total(total)));
                self.until = self.until.min(Instant::now() + GRACE);
            }
            None => {}
        }
    }
}

/// Checks the stream from user `from` (pusher: on channel `from`; with `share`, this channel's part
/// of it) (starting with the frames in `early`, which arrived before this task saw `go`) until it is complete or [`DRAIN`] after `end_at`; adds the verdict to the worker's
/// counts.
#[allow(clippy::too_many_arguments)]
pub async fn receive_numbered(
    ctx: &Ctx,
    ws: &mut Ws,
    key: usize,
    from: &str,
    share: Option<Share>,
    end_at: Instant,
    early: Vec<Data>,
) -> Result<(), Failure> {
    let mut st = Receiving {
        share,
        tracker: SeqTracker::new(),
        total: None,
        until: end_at + DRAIN,
    };
    for data in &early {
        st.on_data(ctx, key, from, data);
    }
    let outcome = loop {
        if st.total.is_some_and(|t| st.tracker.complete(t)) {
            break Ok(());
        }
        tokio::select! {
            r = ctx.recv(ws) => match r {
                Err(f) => break Err(f),
                Ok(data) => st.on_data(ctx, key, from, &data),
            },
            _ = sleep_until(st.until) => break Ok(()),
        }
    };
    let Receiving { tracker, total, .. } = st;
    let total = total.unwrap_or_else(|| {
        ctx.errors.add("end_missing");
        tracker.max_seen().map_or(0, |m| m + 1)
    });
    let c = tracker.finish(total);
    ctx.lost.fetch_add(c.lost, Relaxed);
    ctx.duplicated.fetch_add(c.duplicated, Relaxed);
    ctx.out_of_order.fetch_add(c.out_of_order, Relaxed);
    for _ in 0..c.invalid.min(1000) {
        ctx.errors.add("bad_seq");
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &'static str) -> Reply {
        reply(&Data::Text(bytes::Bytes::from_static(text.as_bytes())))
    }

    #[test]
    fn a_channel_counts_its_share_of_the_publishers_messages() {
        let share = Share { n: 3, c: 1 };
        assert_eq!(share.index(1), Some(0));
        assert_eq!(share.index(4), Some(1));
        assert_eq!(share.index(3), None);
        // Messages 0..5: channel 1 got 1 and 4; 0..1: none; 0..2: one.
        assert_eq!(share.total(5), 2);
        assert_eq!(share.total(1), 0);
        assert_eq!(share.total(2), 1);
        assert_eq!(Share { n: 1, c: 0 }.total(7), 7);
    }

    #[test]
    fn failed_acks_are_failures_of_their_kind() {
        let kind = |r| match r {
            Reply::Failed(k) => k,
            _ => String::from("not a failure"),
        };
        assert!(matches!(
            read(r#"{"op":"ack","status":"delivered","conns":1}"#),
            Reply::Done
        ));
        let offline = read(r#"{"op":"ack","status":"offline","conns":0}"#);
        assert_eq!(kind(offline), "offline");
        // The relay's answer when Redis cannot be asked, unknown to `AckStatus`.
        let unavailable = read(r#"{"op":"ack","id":"x","status":"unavailable","conns":0}"#);
        assert_eq!(kind(unavailable), "unavailable");
        let error = read(r#"{"op":"error","code":"rate_limited","message":"slow down"}"#);
        assert_eq!(kind(error), "server_rate_limited");
        assert!(matches!(read(r#"{"op":"pong"}"#), Reply::Other));
        assert!(matches!(read("not json"), Reply::Bad));
        assert!(matches!(read(r#"{"op":"ready","status":"x"}"#), Reply::Bad));
    }
}
