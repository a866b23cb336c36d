//! A shard's connection table: a slab of [`Conn`] records with generation-checked ids, the timer wheel
//! that visits them, and the two operations every route ends in: queue a frame, close a connection.

use bytes::Bytes;
use metrics::Counter;
use slab::Slab;

use super::{Conn, Phase};
use crate::{
    ids::ConnId,
    timer::TimerWheel,
    ws::{CloseReason, encode::close_frame},
};

/// Outcome of [`ConnTable::enqueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// The frame waits in the connection's queue.
    Queued,
    /// The queue would exceed its bound: the connection is now closing with 4008.
    SlowConsumer,
    /// The connection is gone or closing; the frame was dropped.
    Gone,
}

/// The connections of one shard.
pub struct ConnTable {
    /// Records by slot; a slot's occupant is identified by `(index, generation)`.
    slab: Slab<(u32, Conn)>,
    /// Generation given to the next inserted record.
    next_generation: u32,
    /// Visits due for handshake, identify, heartbeat and close deadlines.
    pub wheel: TimerWheel,
    /// Bytes one connection may have queued.
    outbound_limit: usize,
    /// Time a closing connection gets to flush and finish the close handshake.
    close_grace_ms: u64,
    /// `gateway_slow_consumer_closes_total` of this shard.
    slow_consumer: Counter,
    /// Connections whose output or close the next I/O pass must settle (each listed once).
    dirty: Vec<ConnId>,
}

impl ConnTable {
    /// An empty table.
    pub fn new(
        tick_ms: u64,
        outbound_limit: usize,
        close_grace_ms: u64,
        slow_consumer: Counter,
    ) -> Self {
        ConnTable {
            slab: Slab::new(),
            next_generation: 1,
            wheel: TimerWheel::new(tick_ms),
            outbound_limit,
            close_grace_ms,
            slow_consumer,
            dirty: Vec::new(),
        }
    }

    /// Lists `id` for the next I/O pass (frames queued, a close begun, an abort).
    pub fn wake(&mut self, id: ConnId) {
        if let Some(c) = self.get_mut(id)
            && !c.dirty
        {
            c.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Moves the listed connections into `out` (emptying the list).
    pub fn take_dirty(&mut self, out: &mut Vec<ConnId>) {
        out.clear();
        std::mem::swap(out, &mut self.dirty);
    }

    /// True when some connection waits for an I/O pass.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Adds a connection and schedules its first visit at `first_visit_ms`.
    pub fn insert(&mut self, conn: Conn, first_visit_ms: u64) -> ConnId {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let index = self.slab.insert((generation, conn)) as u32;
        let id = ConnId { index, generation };
        self.schedule(id, first_visit_ms);
        id
    }

    /// The record of `id`, if it is still the slot's occupant.
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        match self.slab.get(id.index as usize) {
            Some((g, c)) if *g == id.generation => Some(c),
            _ => None,
        }
    }

    /// The record of `id`, mutable.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        match self.slab.get_mut(id.index as usize) {
            Some((g, c)) if *g == id.generation => Some(c),
            _ => None,
        }
    }

    /// Removes `id`'s record.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        self.get(id)?;
        Some(self.slab.remove(id.index as usize).1)
    }

    /// (Re)schedules `id`'s next visit; earlier entries become stale.
    pub fn schedule(&mut self, id: ConnId, at_ms: u64) {
        let tick = self.wheel.schedule(id, at_ms);
        if let Some(c) = self.get_mut(id) {
            c.timer_at = tick as u32;
        }
    }

    /// Brings `id`'s next visit forward to `at_ms` when it is due later than that (a new deadline,
    /// such as a token's expiry); a later `at_ms` changes nothing.
    pub fn schedule_by(&mut self, id: ConnId, at_ms: u64) {
        let due = self.get(id).map(|c| c.timer_at);
        // Earlier on the truncated ticks: both are within the wheel's horizon of its cursor.
        let tick = self.wheel.tick_of(at_ms) as u32;
        if due.is_some_and(|t| (tick.wrapping_sub(t) as i32) < 0) {
            self.schedule(id, at_ms);
        }
    }

    /// Queues `frame` to `id`, enforcing the outbound bound, and wakes its task.
    pub fn enqueue(&mut self, id: ConnId, frame: Bytes, now_ms: u64) -> Enqueued {
        let limit = self.outbound_limit;
        let Some(conn) = self.get_mut(id) else {
            return Enqueued::Gone;
        };
        if conn.is_closing() || matches!(conn.phase, Phase::Handshake(_)) {
            return Enqueued::Gone;
        }
        if conn.out.bytes() + frame.len() > limit {
            self.slow_consumer.increment(1);
            self.close(id, CloseReason::SlowConsumer, now_ms);
            return Enqueued::SlowConsumer;
        }
        conn.out.push(frame);
        self.wake(id);
        Enqueued::Queued
    }

    /// Starts closing `id` with `reason`: queues the close frame (after what is queued, or instead of it
    /// for a slow consumer), and gives the connection `close_grace` to finish. Closing twice is a no-op.
    pub fn close(&mut self, id: ConnId, reason: CloseReason, now_ms: u64) {
        self.close_with(id, reason, None, now_ms);
    }

    /// [`close`](Self::close) with a custom close frame (a drain's 1012 with its reconnect hint).
    pub fn close_with(
        &mut self,
        id: ConnId,
        reason: CloseReason,
        frame: Option<Bytes>,
        now_ms: u64,
    ) {
        let deadline_ms = now_ms + self.close_grace_ms;
        let Some(conn) = self.get_mut(id) else { return };
        if conn.is_closing() {
            return;
        }
        match conn.phase {
            Phase::Handshake(_) | Phase::Answering { .. } => conn.abort = true,
            _ => {
                if reason == CloseReason::SlowConsumer {
                    conn.out.drop_unstarted();
                }
                let frame = match (&conn.pusher, frame) {
                    // A Pusher client reads Pusher's codes (a drain's 4200, not 1012).
                    (Some(_), _) => crate::pusher::frames::close_frame(reason),
                    (None, frame) => frame.unwrap_or_else(|| close_frame(reason)),
                };
                conn.out.push(frame);
                conn.phase = Phase::Closing {
                    reason,
                    deadline_ms,
                    peer_done: false,
                    desync: false,
                    write_shut: false,
                };
            }
        }
        self.wake(id);
        self.schedule(id, deadline_ms);
    }

    /// Up to `max` connections that are not closing yet, in slot order: the next batch of a drain or
    /// of `POST /v1/close`. Connections already closing are skipped, so the cost is `max` plus the
    /// connections still finishing their close handshake, not the table size.
    pub fn open_ids(&self, max: usize) -> Vec<ConnId> {
        self.slab
            .iter()
            .filter(|(_, (_, c))| !c.is_closing())
            .take(max)
            .map(|(i, (g, _))| ConnId {
                index: i as u32,
                generation: *g,
            })
            .collect()
    }

    /// Ids of every connection (for shutdown).
    pub fn ids(&self) -> Vec<ConnId> {
        self.slab
            .iter()
            .map(|(i, (g, _))| ConnId {
                index: i as u32,
                generation: *g,
            })
            .collect()
    }

    /// Connections in the table.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ratelimit::TokenBucket;

    fn table() -> ConnTable {
        ConnTable::new(10, 100, 1000, metrics::Counter::noop())
    }

    fn open_conn() -> Conn {
        let mut c = Conn::new(-1, 0, TokenBucket::new(0, 1, 0), false);
        c.phase = Phase::Open;
        c
    }

    #[test]
    fn stale_ids_never_reach_a_new_occupant() {
        let mut t = table();
        let a = t.insert(open_conn(), 0);
        t.remove(a).unwrap();
        let b = t.insert(open_conn(), 0);
        assert_eq!(a.index, b.index);
        assert!(t.get(a).is_none());
        assert!(t.get(b).is_some());
        assert_eq!(t.enqueue(a, Bytes::from_static(b"x"), 0), Enqueued::Gone);
    }

    #[test]
    fn the_outbound_bound_closes_with_4008_once() {
        let mut t = table();
        let a = t.insert(open_conn(), 0);
        assert_eq!(
            t.enqueue(a, Bytes::from(vec![0u8; 60]), 0),
            Enqueued::Queued
        );
        assert_eq!(
            t.enqueue(a, Bytes::from(vec![0u8; 60]), 0),
            Enqueued::SlowConsumer
        );
        let c = t.get(a).unwrap();
        assert!(matches!(
            c.phase,
            Phase::Closing {
                reason: CloseReason::SlowConsumer,
                deadline_ms: 1000,
                ..
            }
        ));
        // The unstarted frame was dropped; only the close frame waits.
        assert_eq!(c.out.bytes(), close_frame(CloseReason::SlowConsumer).len());
        assert_eq!(t.enqueue(a, Bytes::from_static(b"x"), 0), Enqueued::Gone);
    }

    #[test]
    fn closing_a_handshaking_connection_aborts_it() {
        let mut t = table();
        let a = t.insert(Conn::new(-1, 0, TokenBucket::new(0, 1, 0), false), 0);
        t.close(a, CloseReason::GoingAway, 0);
        assert!(t.get(a).unwrap().abort);
    }
}
