//! `--event-rate` rules: per-event limits on `publish` and `send` frames.

use ferrocast_redis::settings::parse_duration;

/// One `--event-rate` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRate {
    /// Event name, or prefix ending in `*`.
    pub pattern: String,
    /// Frames allowed per second.
    pub per_second: f64,
    /// Frames allowed in a burst.
    pub burst: u32,
}

/// Parses `PATTERN=N/PERIOD[,BURST]`.
pub fn parse_event_rate(text: &str) -> Result<EventRate, String> {
    let usage = || format!("{text:?} is not PATTERN=N/PERIOD[,BURST] (e.g. chat.*=5/1s,10)");
    let (pattern, rate) = text.trim().split_once('=').ok_or_else(usage)?;
    let (rate, burst) = match rate.split_once(',') {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (rate, None),
    };
    let (count, period) = rate.split_once('/').ok_or_else(usage)?;
    let count: u32 = count.trim().parse().map_err(|_| usage())?;
    let period = parse_duration(period)?;
    let burst = match burst {
        Some(burst) => burst.trim().parse().map_err(|_| usage())?,
        None => count,
    };
    if pattern.is_empty() || count == 0 || period.is_zero() || burst == 0 {
        return Err(usage());
    }
    Ok(EventRate {
        pattern: pattern.trim().to_owned(),
        per_second: f64::from(count) / period.as_secs_f64(),
        burst,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::Parser;

    #[test]
    fn event_rates_parse_and_bad_ones_are_explained() {
        let rule = parse_event_rate("chat.*=5/1s,10").expect("rule");
        assert_eq!(
            rule,
            EventRate {
                pattern: "chat.*".into(),
                per_second: 5.0,
                burst: 10
            }
        );
        let rule = parse_event_rate("typing=30/1m").expect("rule");
        assert_eq!((rule.per_second, rule.burst), (0.5, 30));
        for bad in [
            "chat",
            "chat=5",
            "chat=x/1s",
            "=5/1s",
            "chat=0/1s",
            "chat=5/0s",
            "c=5/1s,0",
        ] {
            assert!(parse_event_rate(bad).is_err(), "{bad}");
        }
        let config = Config::parse_from([
            "edge",
            "--event-rate",
            "a=1/1s",
            "--event-rate",
            "b*=2/1s,4",
        ]);
        assert_eq!(config.event_rates.len(), 2);
    }
}
