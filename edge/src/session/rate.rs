//! The inbound rate limit of one connection: a token bucket, checked without timers.

use std::time::Instant;

/// A token bucket: `burst` tokens, refilled at `rate` per second.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Frames refused since the last one allowed.
    refused_in_a_row: u32,
}

/// What to do with one inbound frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Allow,
    /// Answer RATE_LIMITED.
    Refuse,
    /// The client keeps at it: close the connection (4008).
    Close,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: Instant::now(),
            refused_in_a_row: 0,
        }
    }

    /// Takes a token for a frame arriving now. After `burst` refusals in a row the verdict is
    /// [`Verdict::Close`].
    pub fn take(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            return Verdict::Allow;
        }
        self.refused_in_a_row += 1;
        if f64::from(self.refused_in_a_row) >= self.burst {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_rate_then_closes_a_flood() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Verdict::Allow);
        }
        assert_eq!(bucket.take(start), Verdict::Refuse);
        // 100 ms later one token has come back.
        assert_eq!(
            bucket.take(start + Duration::from_millis(100)),
            Verdict::Allow
        );
        assert_eq!(
            bucket.take(start + Duration::from_millis(100)),
            Verdict::Refuse
        );
        assert_eq!(
            bucket.take(start + Duration::from_millis(100)),
            Verdict::Refuse
        );
        assert_eq!(
            bucket.take(start + Duration::from_millis(100)),
            Verdict::Close
        );
    }

    #[test]
    fn refusals_in_a_row_reset_when_a_frame_is_allowed() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 2);
        bucket.take(start);
        bucket.take(start);
        assert_eq!(bucket.take(start), Verdict::Refuse);
        assert_eq!(
            bucket.take(start + Duration::from_millis(100)),
            Verdict::Allow
        );
        assert_eq!(
            bucket.take(start + Duration::from_millis(100)),
            Verdict::Refuse
        );
    }
}
