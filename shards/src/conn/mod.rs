//! One client connection: its record in the shard's table, and what its bytes mean.
//!
//! The record ([`Conn`]) is the per-connection memory budget: every field is counted, and an idle,
//! identified connection holds no heap but its name and its subscriptions. A connection has no task,
//! no future and no socket object: its descriptor is in the record and the shard's ring
//! (`crate::uring`) reads and writes it. [`input`] turns the bytes read into handshakes, frames and
//! events; [`lifecycle`] removes a finished connection from every table.

pub mod input;
pub mod lifecycle;
pub mod outq;
pub mod ratelimit;
pub mod stamp;
pub mod table;

use std::{collections::HashMap, net::IpAddr, os::fd::RawFd, sync::Arc};

use thin_vec::ThinVec;

use crate::ws::{CloseReason, decode::Decoder};
use outq::OutQueue;
use ratelimit::{PingWindow, TokenBucket};
use stamp::Stamp;

/// What a shard keeps about its connections besides the table: session numbering, the connect rate,
/// the overflow held to be told 1013, and per-IP accounting.
pub struct Intake {
    /// Next session counter.
    pub next_session: u32,
    /// Connections held past the cap (to send them 1013).
    pub rejecting: usize,
    /// The address each connection is counted under in the node's per-IP table, released on close.
    /// Kept here rather than in the record, so the 17 bytes are paid only while
    /// `limits.max_connections_per_ip` is on (it must be off behind a load balancer).
    pub ip_keys: HashMap<crate::ids::ConnId, IpAddr>,
    /// This shard's share of `limits.max_connects_per_sec` (rate 0: no limit).
    pub connects: TokenBucket,
}

impl Intake {
    /// Nothing yet; connects limited to `rate` per second (0: no limit).
    pub fn new(rate: u32) -> Intake {
        Intake {
            next_session: 0,
            rejecting: 0,
            ip_keys: HashMap::new(),
            connects: TokenBucket::new(rate, rate, 0),
        }
    }
}

/// Where a connection is in its life.
#[derive(Debug)]
pub enum Phase {
    /// Waiting for the HTTP upgrade; holds the request bytes read so far (boxed: the phase is then 16
    /// bytes, not 24, for the whole life of the connection).
    Handshake(Box<Vec<u8>>),
    /// Upgraded: WebSocket frames flow.
    Open,
    /// An HTTP API request waiting for its answer from other shards or the cluster (a Pusher channel
    /// query); dropped at `deadline_ms` if none comes. Bytes read meanwhile are discarded.
    Answering {
        /// When the connection is dropped without an answer.
        deadline_ms: u64,
    },
    /// A close frame is queued or sent; the connection ends when it is flushed and the peer answers,
    /// or at `deadline_ms`.
    Closing {
        /// Why it closes (metric label).
        reason: CloseReason,
        /// When it is dropped whatever happens.
        deadline_ms: u64,
        /// The peer sent its close frame (or the socket reached EOF): no need to wait for it.
        peer_done: bool,
        /// The input stream can no longer be parsed (after a protocol error): bytes read are discarded
        /// until EOF or the deadline (a lingering close, so the client sees the close frame, not a reset).
        desync: bool,
        /// Our close frame is flushed and the write side shut down (FIN sent): the peer sees the close
        /// frame, then EOF, and closes its side, which ends the connection without waiting for the
        /// deadline even when its close reply cannot be parsed.
        write_shut: bool,
    },
}

/// A connection's record in its shard's table.
#[derive(Debug)]
pub struct Conn {
    /// Life stage.
    pub phase: Phase,
    /// The identified user; `None` until identify succeeds.
    pub user: Option<Arc<str>>,
    /// Session id given in `ready`.
    pub session: u64,
    /// JWT mode: what the connection's token grants and when it expires; `None` in dev mode.
    pub auth: Option<Box<crate::access::ConnAuth>>,
    /// A Pusher protocol connection (`/app/{key}`): its app; `None` for protocol v1.
    pub pusher: Option<Box<crate::pusher::record::PusherConn>>,
    /// Incomplete frame or fragmented message; empty while idle.
    pub decoder: Decoder,
    /// Frames waiting to be written.
    pub out: OutQueue,
    /// Channels this connection subscribes to (for cleanup on close): a thin vector (one pointer, the
    /// length and capacity live in its allocation), so a connection with no subscription pays 8 bytes.
    pub subs: ThinVec<Arc<str>>,
    /// Message rate limit.
    pub bucket: TokenBucket,
    /// The client's WebSocket pings this second (`limits.max_pings_per_sec`).
    pub pings: PingWindow,
    /// When the connection was accepted.
    pub opened: Stamp,
    /// Last bytes received.
    pub last_rx: Stamp,
    /// Last server ping sent (or the upgrade).
    pub last_ping: Stamp,
    /// Tick of this connection's live timer-wheel entry, truncated to 32 bits (other entries are
    /// stale; a live entry is never more than the wheel's horizon ahead, so the truncation is exact).
    pub timer_at: u32,
    /// The socket; closed through the shard's ring when the connection ends (-1 in unit tests).
    pub fd: RawFd,
    /// Listed in the table's dirty list: its output or close must be settled by the next I/O pass.
    pub dirty: bool,
    /// Drop the socket now, without flushing (handshake timeout, close deadline passed).
    pub abort: bool,
    /// Accepted past the node's connection cap: after the upgrade it is closed with 1013.
    pub over_capacity: bool,
    /// Accepted past the per-IP cap (held like `over_capacity`, told 1013 with its own reason).
    pub over_ip_limit: bool,
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(fd: RawFd, now_ms: u64, bucket: TokenBucket, over_capacity: bool) -> Self {
        Conn {
            phase: Phase::Handshake(Box::default()),
            user: None,
            session: 0,
            auth: None,
            pusher: None,
            decoder: Decoder::default(),
            out: OutQueue::default(),
            subs: ThinVec::new(),
            bucket,
            pings: PingWindow::default(),
            opened: Stamp::at(now_ms),
            last_rx: Stamp::at(now_ms),
            last_ping: Stamp::at(now_ms),
            timer_at: 0,
            fd,
            dirty: false,
            abort: false,
            over_capacity,
            over_ip_limit: false,
        }
    }

    /// True once the close frame is queued (or the connection is going anyway).
    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. }) || self.abort
    }

    /// Heap bytes held by this connection's record (for the memory budget).
    pub fn heap_bytes(&self) -> usize {
        let user = self.user.as_ref().map_or(0, |u| u.len() + 16);
        let auth = self.auth.as_ref().map_or(0, |a| {
            std::mem::size_of::<crate::access::ConnAuth>() + a.grants.heap_bytes()
        });
        let pusher = self.pusher.as_ref().map_or(0, |_| {
            std::mem::size_of::<crate::pusher::record::PusherConn>()
        });
        let subs = match self.subs.capacity() {
            0 => 0,
            n => 16 + n * std::mem::size_of::<Arc<str>>(),
        };
        let handshake = match &self.phase {
            Phase::Handshake(b) => std::mem::size_of::<Vec<u8>>() + b.capacity(),
            _ => 0,
        };
        user + auth + pusher + subs + handshake + self.decoder.heap_bytes() + self.out.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_stays_small() {
        // The per-connection budget: 120 bytes today (docs/BENCHMARKS.md counts every field); what
        // an idle connection does not use is behind a pointer.
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 128, "Conn is {size} bytes");
        let mut c = Conn::new(-1, 0, TokenBucket::new(100, 200, 0), false);
        assert_eq!(c.heap_bytes(), std::mem::size_of::<Vec<u8>>());
        c.phase = Phase::Open;
        assert_eq!(c.heap_bytes(), 0, "an idle open connection holds no heap");
    }
}
