//! The inbound rate limits of one connection: token buckets, checked without timers. One for
//! every frame; and, for connections that `send` upstream, one for messages and one for bytes.

use std::time::Instant;

/// A token bucket: `burst` tokens, refilled at `rate` per second.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Frames refused since the last one allowed.
    refused_in_a_row: u32,
    /// Refusals in a row after which the client is closed.
    patience: u32,
}

/// Longest wait ever told to a client: a rate of zero (or a very slow rule) would otherwise say
/// "forever", which no client can act on (browsers' timers, for one, fire at once past 2^31 ms).
pub const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

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
    /// A full bucket; `burst` refusals in a row close the client.
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        TokenBucket::with_patience(rate, burst, burst)
    }

    /// A full bucket; `patience` refusals in a row close the client.
    pub fn with_patience(rate: f64, burst: u32, patience: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: Instant::now(),
            refused_in_a_row: 0,
            patience: patience.max(1),
        }
    }

    /// Takes `tokens` more for work a frame caused beyond itself (a replay's pages). The bucket
    /// may go into debt, down to one burst: later frames are refused until it has refilled.
    pub fn charge(&mut self, tokens: f64) {
        self.tokens = (self.tokens - tokens).max(-self.burst);
    }

    /// Refills the bucket up to `now`.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Milliseconds from `now` until `n` tokens are there (0: now).
    fn wait_for(&mut self, n: f64, now: Instant) -> u64 {
        self.refill(now);
        if self.tokens >= n {
            0
        } else if self.rate <= 0.0 {
            MAX_RETRY_AFTER_MS
        } else {
            (((n - self.tokens) / self.rate * 1000.0).ceil() as u64).min(MAX_RETRY_AFTER_MS)
        }
    }

    /// Milliseconds from `now` until a frame would be allowed again.
    pub fn retry_after_ms(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if tokens >= 1.0 {
            return 0;
        }
        if self.rate <= 0.0 {
            return MAX_RETRY_AFTER_MS;
        }
        (((1.0 - tokens) / self.rate * 1000.0).ceil() as u64).min(MAX_RETRY_AFTER_MS)
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
        if self.refused_in_a_row >= self.patience {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

/// Bytes of data per second: what one connection may write into history with `publish`, or
/// into the inbox with `send`.
pub struct ByteQuota(TokenBucket);

impl ByteQuota {
    /// `bytes_rate` bytes a second. The bucket holds a second's worth or one message of
    /// `max_data` bytes, whichever is more, so the largest allowed message can always pass
    /// eventually.
    pub fn new(bytes_rate: usize, max_data: usize) -> ByteQuota {
        let burst = u32::try_from(bytes_rate.max(max_data)).unwrap_or(u32::MAX);
        ByteQuota(TokenBucket::new(bytes_rate as f64, burst))
    }

    /// Milliseconds from `now` until `len` bytes may pass (0: now).
    fn wait_for(&mut self, len: usize, now: Instant) -> u64 {
        self.0.wait_for(len as f64, now)
    }

    /// Takes `len` bytes arriving `now`, or says how many milliseconds to wait.
    pub fn take(&mut self, len: usize, now: Instant) -> Result<(), u64> {
        match self.wait_for(len, now) {
            0 => {
                self.0.tokens -= len as f64;
                Ok(())
            }
            wait => Err(wait),
        }
    }
}

/// What one connection may `send` upstream: messages per second, and bytes of data per second.
pub struct UpstreamQuota {
    messages: TokenBucket,
    bytes: ByteQuota,
}

impl UpstreamQuota {
    /// `rate` messages a second (bursts of `burst`) and `bytes_rate` bytes of data a second
    /// (see [`ByteQuota::new`]).
    pub fn new(rate: f64, burst: u32, bytes_rate: usize, max_data: usize) -> UpstreamQuota {
        UpstreamQuota {
            messages: TokenBucket::new(rate, burst),
            bytes: ByteQuota::new(bytes_rate, max_data),
        }
    }

    /// Takes a message of `len` bytes arriving `now`, or says how many milliseconds to wait.
    pub fn take(&mut self, len: usize, now: Instant) -> Result<(), u64> {
        let wait = self
            .messages
            .wait_for(1.0, now)
            .max(self.bytes.wait_for(len, now));
        if wait > 0 {
            return Err(wait);
        }
        self.messages.tokens -= 1.0;
        self.bytes.0.tokens -= len as f64;
        Ok(())
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

    #[test]
    fn charges_put_the_bucket_in_debt_that_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 5);
        bucket.take(start);
        bucket.charge(100.0);
        assert_eq!(bucket.take(start), Verdict::Refuse, "in debt, down to -5");
        // 5 tokens of debt take 0.5 s to pay back, and 0.1 s more for the next token.
        assert_eq!(
            bucket.take(start + Duration::from_millis(500)),
            Verdict::Refuse
        );
        assert_eq!(
            bucket.take(start + Duration::from_millis(600)),
            Verdict::Allow
        );
    }

    #[test]
    fn the_upstream_quota_limits_messages_and_bytes_and_says_how_long_to_wait() {
        let start = Instant::now();
        let mut quota = UpstreamQuota::new(2.0, 2, 1000, 500);
        assert_eq!(quota.take(400, start), Ok(()));
        assert_eq!(quota.take(400, start), Ok(()));
        assert_eq!(quota.take(1, start), Err(500), "a message per 500 ms");
        let later = start + Duration::from_millis(500);
        assert_eq!(
            quota.take(800, later),
            Err(100),
            "700 bytes there; 100 ms to 800"
        );
        assert_eq!(quota.take(700, later), Ok(()));
    }

    #[test]
    fn the_byte_quota_passes_a_second_s_worth_then_the_rate() {
        let start = Instant::now();
        let mut quota = ByteQuota::new(1000, 200);
        assert_eq!(quota.take(600, start), Ok(()));
        assert_eq!(quota.take(400, start), Ok(()));
        assert_eq!(quota.take(100, start), Err(100));
        assert_eq!(quota.take(100, start + Duration::from_millis(100)), Ok(()));
        // A message larger than a second's worth still passes once the bucket is full.
        let mut big = ByteQuota::new(100, 500);
        assert_eq!(big.take(500, start), Ok(()));
    }
}
