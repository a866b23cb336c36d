//! Sends in flight: the bytes each ring send points at, owned here until its completion.
//!
//! A connection has at most one send in flight. When one frame waits, the send points into that
//! frame's shared `Bytes` (no copy); when several wait they are gathered into a pooled buffer of up to
//! 64 KiB. The entry outlives the connection's record if the connection ends first: the kernel may
//! still read the bytes until the send completes or is cancelled.

use std::collections::HashMap;

use bytes::Bytes;

use crate::ids::ConnId;

/// Gathered buffers kept for reuse (each up to the gather size).
const POOL: usize = 16;

/// The bytes of one send.
enum Payload {
    /// Part of one frame (shared, not copied); held, never read: it keeps the bytes alive.
    Frame(#[allow(dead_code)] Bytes),
    /// Several frames copied together.
    Gathered(Vec<u8>),
}

/// The shard's sends in flight, by connection.
#[derive(Default)]
pub struct Sends {
    /// One entry per connection with a send in flight.
    flight: HashMap<ConnId, Payload, ahash::RandomState>,
    /// Gather buffers to reuse.
    pool: Vec<Vec<u8>>,
}

impl Sends {
    /// Keeps `frame` for `id`'s send; returns the pointer and length to send.
    pub fn frame(&mut self, id: ConnId, frame: Bytes) -> (*const u8, usize) {
        let out = (frame.as_ptr(), frame.len());
        self.flight.insert(id, Payload::Frame(frame));
        out
    }

    /// A buffer to gather `id`'s frames into; hand it back with [`Sends::gathered`].
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.clear();
        b
    }

    /// Keeps the gathered `buf` for `id`'s send; returns the pointer and length to send.
    pub fn gathered(&mut self, id: ConnId, buf: Vec<u8>) -> (*const u8, usize) {
        let out = (buf.as_ptr(), buf.len());
        self.flight.insert(id, Payload::Gathered(buf));
        out
    }

    /// `id`'s send completed (or was cancelled): its bytes are released.
    pub fn done(&mut self, id: ConnId) {
        if let Some(Payload::Gathered(buf)) = self.flight.remove(&id)
            && self.pool.len() < POOL
        {
            self.pool.push(buf);
        }
    }
}
