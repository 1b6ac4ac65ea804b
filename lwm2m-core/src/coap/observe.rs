//! Observe (RFC 7641) sequence numbers and the notification freshness rule.

use crate::time::{Duration, Instant};

/// Observe values are 24-bit.
pub const SEQ_MODULUS: u32 = 1 << 24;

/// Half the sequence space: the reordering window of RFC 7641 §3.4.
const HALF: u32 = 1 << 23;

/// After this long, any notification counts as newer whatever its number (RFC 7641 §3.4).
pub const FRESHNESS_WINDOW: Duration = Duration::from_secs(128);

/// True if a notification with sequence `v2` received at `t2` is newer than
/// the last one accepted, `v1` received at `t1` (RFC 7641 §3.4).
///
/// ```
/// use lwm2m_core::coap::observe::is_newer;
/// use lwm2m_core::time::Instant;
/// let t = Instant::from_millis(0);
/// assert!(is_newer(5, t, 6, t));
/// assert!(!is_newer(6, t, 5, t));
/// assert!(is_newer((1 << 24) - 1, t, 0, t)); // wrap-around
/// assert!(is_newer(6, t, 5, Instant::from_millis(129_000))); // stale by time
/// ```
pub fn is_newer(v1: u32, t1: Instant, v2: u32, t2: Instant) -> bool {
    let (v1, v2) = (v1 % SEQ_MODULUS, v2 % SEQ_MODULUS);
    (v1 < v2 && v2 - v1 < HALF) || (v1 > v2 && v1 - v2 > HALF) || t2 > t1 + FRESHNESS_WINDOW
}

/// Sequence counter for the notifications of one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqCounter(u32);

impl SeqCounter {
    /// Starts at `first` (taken modulo 2^24).
    pub fn new(first: u32) -> Self {
        SeqCounter(first % SEQ_MODULUS)
    }
    /// Returns the next value to send, wrapping at 2^24.
    pub fn next_value(&mut self) -> u32 {
        let v = self.0;
        self.0 = (self.0 + 1) % SEQ_MODULUS;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_edges() {
        let t = Instant::from_millis(1000);
        assert!(is_newer(0, t, HALF - 1, t));
        assert!(!is_newer(0, t, HALF, t));
        assert!(!is_newer(0, t, HALF + 1, t));
        assert!(is_newer(HALF + 1, t, 0, t));
        assert!(!is_newer(7, t, 7, t));
        assert!(!is_newer(7, t, 6, t + Duration::from_secs(128)));
        assert!(is_newer(7, t, 6, t + Duration::from_millis(128_001)));
    }

    #[test]
    fn counter_wraps() {
        let mut c = SeqCounter::new(SEQ_MODULUS - 1);
        assert_eq!(c.next_value(), SEQ_MODULUS - 1);
        assert_eq!(c.next_value(), 0);
    }
}
