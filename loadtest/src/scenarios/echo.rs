//! The echo scenario: round trips of checked payloads, `--window` in flight per connection.
//!
//! With `--raw` every message is one binary (or `--text`) frame the server sends back as is (`gateway
//! echo`, other echo servers). Without it the connection is identified and each message is a `send` to
//! its own user, so the echo is the delivered `message` and the round trip crosses the gateway's
//! routing. Payload `seq` is `size` bytes: the sequence number in hex, then letters derived from it, so
//! each echo can be checked byte for byte and matched to what was sent.

use std::{collections::VecDeque, sync::atomic::Ordering::Relaxed};

use bytes::Bytes;
use shards::protocol::client::simd_json::prelude::*;
use shards::protocol::{
    ErrorCode,
    client::{self, ServerFrame},
};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    accounting::SeqTracker,
    net::{self, Data, Failure, Ws},
    stats::now_us,
    worker::{Ctx, DRAIN},
};

/// Hex digits of the sequence number at the start of a payload (fewer if the payload is shorter).
const HEADER: usize = 16;

/// The payload byte at position `i` of message `seq`.
fn byte_at(seq: u64, size: usize, i: usize) -> u8 {
    let h = size.min(HEADER);
    if i < h {
        let nibble = (seq >> (4 * (h - 1 - i))) & 15;
        b"0123456789abcdef"[nibble as usize]
    } else {
        b'a' + ((seq + i as u64) % 26) as u8
    }
}

/// Payload `seq` of `size` bytes (ASCII, so it is also valid text and a valid JSON string body).
pub fn payload(seq: u64, size: usize) -> Vec<u8> {
    (0..size).map(|i| byte_at(seq, size, i)).collect()
}

/// True if `bytes` is exactly payload `seq`.
pub fn matches(bytes: &[u8], seq: u64, size: usize) -> bool {
    bytes.len() == size
        && bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| b == byte_at(seq, size, i))
}

/// The sequence number written at the start of a payload (exact when `size >= 16`).
fn seq_of(bytes: &[u8]) -> Option<u64> {
    let h = bytes.len().min(HEADER);
    std::str::from_utf8(&bytes[..h])
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
}

/// One connection's echo loop until `end_at`, then [`DRAIN`] for the echoes still in flight.
pub async fn run(
    ctx: &Ctx,
    ws: &mut Ws,
    key: usize,
    me: Option<&str>,
    end_at: Instant,
) -> Result<(), Failure> {
    let opts = &ctx.task.opts;
    let (size, window) = (opts.size, opts.window);
    let mut inflight: VecDeque<(u64, u64)> = VecDeque::with_capacity(window);
    let mut tracker = SeqTracker::new();
    let mut next = 0u64;
    let give_up = end_at + DRAIN;
    let outcome = loop {
        let sending = Instant::now() < end_at;
        if sending && inflight.len() < window {
            let (mut n, mut failed) = (0, None);
            while inflight.len() < window {
                let body = payload(next, size);
                let msg = match me {
                    None if opts.text => {
                        Message::text(String::from_utf8(body).expect("ASCII payload"))
                    }
                    None => Message::binary(Bytes::from(body)),
                    Some(me) => {
                        let data = format!("\"{}\"", String::from_utf8(body).expect("ASCII"));
                        Message::text(client::send(None, me, &data))
                    }
                };
                if let Err(f) = net::feed(ws, msg).await {
                    failed = Some(f);
                    break;
                }
                inflight.push_back((next, now_us()));
                next += 1;
                n += 1;
            }
            if let Some(f) = failed {
                break Err(f);
            }
            if let Err(f) = net::flush(ws).await {
                break Err(f);
            }
            ctx.sent.fetch_add(n, Relaxed);
            ctx.rec.sent(key, n);
        } else if !sending && inflight.is_empty() {
            break Ok(());
        }
        let wake = if sending { end_at } else { give_up };
        tokio::select! {
            r = net::recv(ws) => match r {
                Ok(data) => on_data(ctx, key, me, &data, &mut inflight, &mut tracker, next),
                Err(f) => break Err(f),
            },
            _ = sleep_until(wake) => if !sending {
                break Ok(());
            },
        }
    };
    let c = tracker.finish(next);
    ctx.lost.fetch_add(c.lost, Relaxed);
    ctx.duplicated.fetch_add(c.duplicated, Relaxed);
    ctx.out_of_order.fetch_add(c.out_of_order, Relaxed);
    outcome
}

/// Matches one echo to what is in flight.
fn on_data(
    ctx: &Ctx,
    key: usize,
    me: Option<&str>,
    data: &Data,
    inflight: &mut VecDeque<(u64, u64)>,
    tracker: &mut SeqTracker,
    next: u64,
) {
    let size = ctx.task.opts.size;
    let owned: Vec<u8>;
    let bytes: &[u8] = match me {
        None => data.bytes(),
        Some(me) => {
            let mut buf = data.bytes().to_vec();
            match ServerFrame::parse(&mut buf) {
                Ok(ServerFrame::Message { from, data, .. }) if from.as_deref() == Some(me) => {
                    match data.as_str() {
                        Some(s) => {
                            owned = s.as_bytes().to_vec();
                            &owned
                        }
                        None => return ctx.errors.add("echo_mismatch"),
                    }
                }
                Ok(ServerFrame::Error { code, .. }) => {
                    ctx.errors.add(format!("server_{}", code.as_str()));
                    if code == ErrorCode::RateLimited {
                        // The send was dropped: stop waiting for it (it counts as lost).
                        inflight.pop_front();
                    }
                    return;
                }
                Ok(_) => return,
                Err(_) => return ctx.errors.add("bad_frame"),
            }
        }
    };
    let found = inflight
        .iter()
        .position(|&(seq, _)| matches(bytes, seq, size));
    match found {
        Some(pos) => {
            let (seq, t) = inflight.remove(pos).expect("position is in range");
            tracker.record(seq);
            ctx.received.fetch_add(1, Relaxed);
            ctx.rec.received(key, now_us().saturating_sub(t));
        }
        None => match seq_of(bytes) {
            Some(seq) if size >= HEADER && seq < next && matches(bytes, seq, size) => {
                tracker.record(seq);
            }
            _ => ctx.errors.add("echo_mismatch"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_number_and_check_byte_for_byte() {
        let p = payload(0x1234, 20);
        assert_eq!(&p[..16], b"0000000000001234");
        assert!(p.is_ascii());
        assert!(matches(&p, 0x1234, 20));
        assert!(!matches(&p, 0x1235, 20));
        assert!(!matches(&p[..19], 0x1234, 20));
        let mut bad = p.clone();
        bad[18] ^= 1;
        assert!(!matches(&bad, 0x1234, 20));
        assert_eq!(seq_of(&p), Some(0x1234));
    }

    #[test]
    fn short_payloads_keep_the_low_digits() {
        assert_eq!(payload(0xabc, 2), b"bc");
        assert!(matches(b"bc", 0xabc, 2));
        assert_eq!(payload(7, 1), b"7");
    }
}
