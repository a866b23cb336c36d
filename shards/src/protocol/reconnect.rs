//! When a client should reconnect after its connection ended, as docs/PROTOCOL.md §close codes asks:
//! never for 4010 (a backend ended the session) or 1008 (refused credentials or origin); after the
//! server's hint for a drain's 1012; otherwise with full-jitter exponential backoff (a random delay in
//! `[0, min(cap, base × 2^attempt)]`), base 5 s for 1013 (the node is full), 1 s for the rest.
//!
//! Shared by `examples/reconnect.rs` and usable by any Rust client; the randomness is passed in so the
//! policy is deterministic to test.

use std::time::Duration;

/// Longest backoff delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// What to do after a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Reconnect after this delay.
    After(Duration),
    /// Do not reconnect on your own.
    Stop,
}

/// The decision for a close with `code` (None: no close frame, e.g. a reset) and `reason`, on the
/// `attempt`-th reconnect in a row (0 first); `unit` is a uniform random number in `[0, 1)`.
pub fn after_close(code: Option<u16>, reason: &str, attempt: u32, unit: f64) -> Reconnect {
    match code {
        Some(4010) | Some(1008) => Reconnect::Stop,
        Some(1012) => match reconnect_hint(reason) {
            Some(hint) => Reconnect::After(hint),
            None => backoff(Duration::from_secs(1), attempt, unit),
        },
        Some(1013) => backoff(Duration::from_secs(5), attempt, unit),
        _ => backoff(Duration::from_secs(1), attempt, unit),
    }
}

/// The `reconnect_after_ms` of a drain's 1012 reason (`{"reconnect_after_ms":N}`).
pub fn reconnect_hint(reason: &str) -> Option<Duration> {
    let rest = reason.split("\"reconnect_after_ms\"").nth(1)?;
    let digits: String = rest
        .trim_start_matches([' ', ':'])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().map(Duration::from_millis)
}

/// Full jitter: uniform in `[0, min(cap, base × 2^attempt)]`.
fn backoff(base: Duration, attempt: u32, unit: f64) -> Reconnect {
    let ceiling = base
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_CAP);
    Reconnect::After(ceiling.mul_f64(unit.clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_hint_is_honoured_exactly() {
        assert_eq!(
            after_close(Some(1012), r#"{"reconnect_after_ms":2481}"#, 7, 0.9),
            Reconnect::After(Duration::from_millis(2481))
        );
        assert_eq!(
            reconnect_hint(r#"{"reconnect_after_ms": 0}"#),
            Some(Duration::ZERO)
        );
        // A 1012 without a readable hint falls back to backoff.
        assert_eq!(
            after_close(Some(1012), "server restarting", 0, 0.5),
            Reconnect::After(Duration::from_millis(500))
        );
    }

    #[test]
    fn sessions_ended_on_purpose_are_not_resumed() {
        assert_eq!(after_close(Some(4010), "", 0, 0.5), Reconnect::Stop);
        assert_eq!(after_close(Some(1008), "", 0, 0.5), Reconnect::Stop);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_full_jitter() {
        let d = |code, attempt, unit| match after_close(code, "", attempt, unit) {
            Reconnect::After(d) => d,
            Reconnect::Stop => panic!("stop"),
        };
        assert_eq!(d(None, 0, 1.0), Duration::from_secs(1));
        assert_eq!(d(Some(1001), 3, 1.0), Duration::from_secs(8));
        assert_eq!(d(Some(4008), 20, 1.0), BACKOFF_CAP);
        assert_eq!(d(Some(1013), 0, 1.0), Duration::from_secs(5));
        assert_eq!(d(Some(1011), 2, 0.0), Duration::ZERO);
    }
}
