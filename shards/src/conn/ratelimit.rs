//! The per-connection rate limits: a token bucket in 12 bytes for data messages, and a 4-byte
//! per-second counter for WebSocket pings.

/// Tokens are kept in thousandths so refills at any rate stay exact enough without floats.
const MILLI: u64 = 1000;

/// A token bucket; `rate == 0` disables it.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    /// Tokens available, in thousandths.
    tokens_milli: u32,
    /// Last refill (shard clock, ms), truncated to 32 bits (wrap-safe for intervals under 49 days).
    last_ms: u32,
    /// Refill rate, tokens per second.
    rate: u16,
    /// Bucket size, in tokens.
    burst: u16,
}

impl TokenBucket {
    /// A full bucket refilling `rate` tokens per second up to `burst`.
    pub fn new(rate: u32, burst: u32, now_ms: u64) -> Self {
        let rate = rate.min(u16::MAX as u32) as u16;
        let burst = burst.clamp(1, u16::MAX as u32) as u16;
        TokenBucket {
            tokens_milli: burst as u32 * MILLI as u32,
            last_ms: now_ms as u32,
            rate,
            burst,
        }
    }

    /// Takes one token; false when the bucket is empty.
    pub fn take(&mut self, now_ms: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let elapsed = (now_ms as u32).wrapping_sub(self.last_ms) as u64;
        let cap = self.burst as u64 * MILLI;
        let refill = elapsed * self.rate as u64; // ms × tokens/s = thousandths of a token
        self.tokens_milli = (self.tokens_milli as u64 + refill).min(cap) as u32;
        self.last_ms = now_ms as u32;
        if self.tokens_milli as u64 >= MILLI {
            self.tokens_milli -= MILLI as u32;
            true
        } else {
            false
        }
    }
}

/// Pings counted per second of the shard clock, in 4 bytes (a second token bucket would take 12 on
/// every connection). A flood is what it stops, not a precise rate: pings straddling a second boundary
/// may reach twice the limit in one second, which is harmless.
#[derive(Clone, Copy, Debug, Default)]
pub struct PingWindow {
    /// The second (shard clock, truncated to 16 bits) `count` belongs to.
    second: u16,
    /// Pings received in that second.
    count: u16,
}

impl PingWindow {
    /// Counts a ping at `now_ms`; false once more than `max` arrived in the current second. `max == 0`
    /// disables the limit.
    pub fn allow(&mut self, max: u32, now_ms: u64) -> bool {
        if max == 0 {
            return true;
        }
        let second = (now_ms / 1000) as u16;
        if second != self.second {
            self.second = second;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        u32::from(self.count) <= max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_are_counted_per_second() {
        let mut w = PingWindow::default();
        assert!((0..10).all(|i| w.allow(10, 5_000 + i)));
        assert!(!w.allow(10, 5_999));
        // The next second starts again.
        assert!((0..10).all(|_| w.allow(10, 6_000)));
        assert!(!w.allow(10, 6_500));
        // A steady ping every few seconds never comes near the limit.
        let mut steady = PingWindow::default();
        assert!((0..1000u64).all(|i| steady.allow(1, i * 2_500)));
        assert!((0..100_000).all(|_| PingWindow::default().allow(0, 0)));
    }

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(10, 5, 0);
        assert_eq!((0..10).filter(|_| b.take(0)).count(), 5);
        // 100 ms at 10/s refills one token.
        assert!(b.take(100));
        assert!(!b.take(100));
        // A long pause refills only up to the burst.
        assert_eq!((0..10).filter(|_| b.take(60_000)).count(), 5);
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let mut b = TokenBucket::new(0, 1, 0);
        assert!((0..1000).all(|_| b.take(0)));
    }
}
