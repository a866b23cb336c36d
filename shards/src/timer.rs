//! The per-shard timer wheel: one entry per connection, not one timer future each.
//!
//! Slots of `tick` width hold connection ids; the shard's tick task drains the slots that came due and
//! visits each connection once (handshake, identify, heartbeat and close deadlines are all checked in
//! that visit), then the visit reschedules it. Entries are lazy: a connection whose `timer_at` no
//! longer matches the slot is skipped, so moving a deadline earlier is one push and never a search.
//! Deadlines beyond the wheel's horizon park in the last slot and are rechecked there.

use crate::ids::ConnId;

/// Slots in the wheel; with the tick it sets the horizon (ticks beyond it wrap via a recheck).
const SLOTS: usize = 512;

/// A hashed timer wheel of connection ids.
pub struct TimerWheel {
    /// Connection ids by slot.
    slots: Vec<Vec<ConnId>>,
    /// Width of one slot, in milliseconds.
    tick_ms: u64,
    /// Last tick drained.
    cursor: u64,
}

impl TimerWheel {
    /// A wheel with slots of `tick_ms` milliseconds, starting at time 0.
    pub fn new(tick_ms: u64) -> Self {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            tick_ms: tick_ms.max(1),
            cursor: 0,
        }
    }

    /// Schedules `conn` for a visit at `at_ms` (rounded up to a tick); returns the tick it got, which the
    /// caller stores as the connection's `timer_at`.
    pub fn schedule(&mut self, conn: ConnId, at_ms: u64) -> u64 {
        let tick = at_ms.div_ceil(self.tick_ms).max(self.cursor + 1);
        let tick = tick.min(self.cursor + SLOTS as u64 - 1);
        self.slots[(tick % SLOTS as u64) as usize].push(conn);
        tick
    }

    /// The tick a visit at `at_ms` would get (before the horizon's clamp).
    pub fn tick_of(&self, at_ms: u64) -> u64 {
        at_ms.div_ceil(self.tick_ms)
    }

    /// Moves the wheel to `now_ms`, appending every id due (with its tick) to `due`.
    pub fn advance(&mut self, now_ms: u64, due: &mut Vec<(ConnId, u64)>) {
        let now_tick = now_ms / self.tick_ms;
        while self.cursor < now_tick {
            self.cursor += 1;
            let slot = &mut self.slots[(self.cursor % SLOTS as u64) as usize];
            due.extend(slot.drain(..).map(|c| (c, self.cursor)));
            if slot.capacity() > 1024 {
                slot.shrink_to(64);
            }
        }
    }

    /// Entries held (live and stale).
    pub fn len(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(i: u32) -> ConnId {
        ConnId {
            index: i,
            generation: 0,
        }
    }

    #[test]
    fn entries_come_due_at_their_tick() {
        let mut w = TimerWheel::new(10);
        let t1 = w.schedule(c(1), 25);
        let t2 = w.schedule(c(2), 100);
        assert_eq!((t1, t2), (3, 10));
        let mut due = Vec::new();
        w.advance(29, &mut due);
        assert!(due.is_empty());
        w.advance(30, &mut due);
        assert_eq!(due, vec![(c(1), 3)]);
        due.clear();
        w.advance(1000, &mut due);
        assert_eq!(due, vec![(c(2), 10)]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_and_far_deadlines_are_clamped() {
        let mut w = TimerWheel::new(10);
        let mut due = Vec::new();
        w.advance(100, &mut due);
        // In the past: next tick.
        assert_eq!(w.schedule(c(1), 5), 11);
        // Beyond the horizon: the last slot, to be rechecked.
        let far = w.schedule(c(2), 10_000_000);
        assert_eq!(far, 10 + SLOTS as u64 - 1);
        w.advance(far * 10, &mut due);
        assert_eq!(due.len(), 2);
    }
}
