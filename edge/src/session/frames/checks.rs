//! What `publish` and `send` both check: the `--event-rate` rules and the data itself.

use ferrocast_protocol::close::ErrorCode;

use crate::bus::Bus;
use crate::ops::metrics::metrics;
use crate::refusal::Refusal;
use crate::session::Session;
use crate::session::rate::{TokenBucket, Verdict};

/// Refusals in a row by one `--event-rate` rule (at least; its burst if larger) after which the
/// client is closed with 4008: it is not waiting as long as it is told.
const EVENT_RATE_PATIENCE: u32 = 10;

impl<B: Bus> Session<B> {
    /// Applies the first `--event-rate` rule `event` matches, if any: its bucket is made on the
    /// connection's first frame of that rule.
    pub(super) fn check_event_rate(&mut self, event: &str) -> Result<(), Refusal> {
        let rules = &self.shared.config.event_rates;
        let Some(index) = rules
            .iter()
            .position(|rule| crate::session::auth::matches(&rule.pattern, event))
        else {
            return Ok(());
        };
        let buckets = self
            .event_limits
            .get_or_insert_with(|| rules.iter().map(|_| None).collect());
        let rule = &rules[index];
        // A small burst must not make a client that retries a little late a flooder.
        let patience = rule.burst.max(EVENT_RATE_PATIENCE);
        let bucket = buckets[index].get_or_insert_with(|| {
            TokenBucket::with_patience(rule.per_second, rule.burst, patience)
        });
        let now = std::time::Instant::now();
        let refused = |bucket: &TokenBucket| {
            metrics().rate_limited.inc();
            Refusal::rate_limited(
                format!(
                    "at most {} {} frames a second (--event-rate)",
                    rule.per_second, rule.pattern
                ),
                bucket.retry_after_ms(now),
            )
        };
        match bucket.take(now) {
            Verdict::Allow => Ok(()),
            Verdict::Refuse => Err(refused(bucket)),
            Verdict::Close => {
                let mut refusal = refused(bucket);
                refusal.close_after = Some(ferrocast_protocol::close::RATE_LIMITED);
                Err(refusal)
            }
        }
    }

    /// Checks `data` of a `publish` or `send`: not over `--max-data-size`, and JSON that every
    /// client's encoding can carry (refused now rather than acked and skipped later).
    pub(super) fn check_data(&self, data: &[u8]) -> Result<(), Refusal> {
        let max = self.shared.config.max_data_size;
        if data.len() > max {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                format!("data is {} bytes; at most {max} allowed", data.len()),
            ));
        }
        ferrocast_protocol::data::check(data)
            .map_err(|e| Refusal::new(ErrorCode::BadFrame, e.to_string()))
    }
}
