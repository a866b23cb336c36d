//! Moments in a connection's record, four bytes each.
//!
//! A record keeps when it was opened, when it last heard from its client and when it last pinged it.
//! Full shard-clock milliseconds are eight bytes each; truncated to 32 bits they are four, which on a
//! million connections is 12 MB less, and a difference between two of them stays exact for any span
//! under 2^31 ms (24.8 days). Every span measured on them is bounded well below that: the configuration
//! caps the handshake, identify and heartbeat timeouts at [`MAX_SPAN_MS`], and an open connection is
//! visited, and its ping stamp renewed, at least once per heartbeat interval.

/// The longest span a stamp measures exactly; the configuration keeps every timeout at or below it.
pub const MAX_SPAN_MS: u64 = i32::MAX as u64;

/// A moment on the shard clock (milliseconds since the shard started), truncated to 32 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp(u32);

impl Stamp {
    /// The stamp of `now_ms`.
    pub fn at(now_ms: u64) -> Self {
        Stamp(now_ms as u32)
    }

    /// Milliseconds from this stamp to `now_ms` (0 when the stamp is later, or the span is beyond
    /// [`MAX_SPAN_MS`] and so cannot be told apart from a later stamp).
    pub fn elapsed(self, now_ms: u64) -> u64 {
        let span = (now_ms as u32).wrapping_sub(self.0);
        if u64::from(span) > MAX_SPAN_MS {
            0
        } else {
            u64::from(span)
        }
    }

    /// The full clock value `span_ms` after this stamp, seen from `now_ms` (not earlier than the stamp).
    pub fn plus(self, span_ms: u64, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.elapsed(now_ms)) + span_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_exact_across_the_32_bit_wrap() {
        let opened = (1u64 << 32) - 1_000; // 1 s before the truncated clock wraps
        let s = Stamp::at(opened);
        assert_eq!(s.elapsed(opened), 0);
        assert_eq!(s.elapsed(opened + 5_000), 5_000);
        assert_eq!(s.plus(10_000, opened + 5_000), opened + 10_000);
        // Weeks into the shard's life, far past the wrap.
        let later = 40 * 86_400_000 + 123;
        let s = Stamp::at(later);
        assert_eq!(s.elapsed(later + 50_000), 50_000);
        assert_eq!(s.plus(25_000, later + 1_000), later + 25_000);
    }

    #[test]
    fn a_stamp_later_than_now_reads_as_no_time_elapsed() {
        let s = Stamp::at(10_000);
        assert_eq!(s.elapsed(9_000), 0);
        assert_eq!(s.plus(500, 9_000), 9_500);
    }
}
