//! The campaign's judge: every subscriber's record of every target, read against what the
//! publishers were told was stored.
//!
//! Per (subscriber, target), what arrived must be in order and without duplicates, and every
//! acknowledged message that did not arrive must lie inside a range the edge announced: between
//! the messages on either side of a `gap`, or of a resume answered `recovered:false`. Anything
//! else is a violation, reported with the first (subscriber, target, sequence) that shows it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// How the edge announced that messages may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A `gap` frame.
    Gap,
    /// A resume (`join` or `auth` with `since`) answered `recovered:false`.
    NotRecovered,
}

/// One thing a subscriber saw of one target, in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A message with this sequence number.
    Msg(u64),
    /// Messages may be missing here.
    Announced(Cause),
}

/// What one subscriber saw of one target.
#[derive(Debug, Clone)]
pub struct Record {
    pub subscriber: String,
    pub target: String,
    pub events: Vec<Event>,
}

/// What is wrong with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// An acknowledged message missing, with no announcement around it.
    SilentLoss,
    /// A message received twice.
    Duplicate,
    /// A message received after one with a larger sequence number.
    Reorder,
}

/// The first violation of its kind in one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: Kind,
    pub subscriber: String,
    pub target: String,
    pub seq: u64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}: subscriber {}, target {}, sequence {}",
            self.kind, self.subscriber, self.target, self.seq
        )
    }
}

/// The verdict over every record.
#[derive(Debug, Default)]
pub struct Verdict {
    pub delivered: u64,
    pub silent_losses: u64,
    pub duplicates: u64,
    pub reorders: u64,
    /// Acknowledged messages missing inside an announced range, by cause.
    pub announced_losses: BTreeMap<&'static str, u64>,
    /// The first violation of each record that has one.
    pub violations: Vec<Violation>,
}

impl Verdict {
    /// Whether the contract held: no silent loss, duplicate or reorder.
    pub fn holds(&self) -> bool {
        self.silent_losses == 0 && self.duplicates == 0 && self.reorders == 0
    }
}

/// Judges `records` against `acked`: per target, the sequence numbers whose publish was
/// acknowledged.
pub fn check(acked: &BTreeMap<String, BTreeSet<u64>>, records: &[Record]) -> Verdict {
    let mut verdict = Verdict::default();
    let empty = BTreeSet::new();
    for record in records {
        let acked = acked.get(&record.target).unwrap_or(&empty);
        judge(record, acked, &mut verdict);
    }
    verdict
}

fn judge(record: &Record, acked: &BTreeSet<u64>, verdict: &mut Verdict) {
    let mut seen = HashSet::new();
    let mut highest: Option<u64> = None;
    // Announced ranges: (cause, highest seen before, first seen after).
    let mut ranges: Vec<(Cause, Option<u64>, Option<u64>)> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut first: BTreeMap<Kind, u64> = BTreeMap::new();
    for event in &record.events {
        match *event {
            Event::Msg(seq) => {
                if !seen.insert(seq) {
                    verdict.duplicates += 1;
                    first.entry(Kind::Duplicate).or_insert(seq);
                    continue;
                }
                verdict.delivered += 1;
                if highest.is_some_and(|h| seq < h) {
                    verdict.reorders += 1;
                    first.entry(Kind::Reorder).or_insert(seq);
                }
                for i in open.drain(..) {
                    ranges[i].2 = Some(seq);
                }
                highest = Some(highest.map_or(seq, |h| h.max(seq)));
            }
            Event::Announced(cause) => {
                open.push(ranges.len());
                ranges.push((cause, highest, None));
            }
        }
    }
    let got: BTreeSet<u64> = seen.into_iter().collect();
    for &seq in acked.difference(&got) {
        let covering = ranges.iter().find(|(_, before, after)| {
            before.is_none_or(|b| b < seq) && after.is_none_or(|a| seq < a)
        });
        match covering {
            Some((cause, _, _)) => {
                let name = match cause {
                    Cause::Gap => "gap",
                    Cause::NotRecovered => "recovered_false",
                };
                *verdict.announced_losses.entry(name).or_default() += 1;
            }
            None => {
                verdict.silent_losses += 1;
                first.entry(Kind::SilentLoss).or_insert(seq);
            }
        }
    }
    for (kind, seq) in first {
        verdict.violations.push(Violation {
            kind,
            subscriber: record.subscriber.clone(),
            target: record.target.clone(),
            seq,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event::{Announced, Msg};

    fn acked(seqs: impl IntoIterator<Item = u64>) -> BTreeMap<String, BTreeSet<u64>> {
        BTreeMap::from([("room:r".to_owned(), seqs.into_iter().collect())])
    }

    fn record(events: Vec<Event>) -> Vec<Record> {
        vec![Record {
            subscriber: "s0".into(),
            target: "room:r".into(),
            events,
        }]
    }

    #[test]
    fn everything_in_order_holds() {
        let verdict = check(&acked(0..4), &record(vec![Msg(0), Msg(1), Msg(2), Msg(3)]));
        assert!(verdict.holds(), "{verdict:?}");
        assert_eq!(verdict.delivered, 4);
    }

    #[test]
    fn a_silent_loss_is_caught_and_named() {
        let verdict = check(&acked(0..4), &record(vec![Msg(0), Msg(1), Msg(3)]));
        assert!(!verdict.holds());
        assert_eq!(verdict.silent_losses, 1);
        assert_eq!(
            verdict.violations,
            [Violation {
                kind: Kind::SilentLoss,
                subscriber: "s0".into(),
                target: "room:r".into(),
                seq: 2
            }]
        );
    }

    #[test]
    fn a_duplicate_is_caught() {
        let verdict = check(&acked(0..3), &record(vec![Msg(0), Msg(1), Msg(1), Msg(2)]));
        assert_eq!((verdict.duplicates, verdict.silent_losses), (1, 0));
        assert_eq!(verdict.violations[0].kind, Kind::Duplicate);
    }

    #[test]
    fn a_reorder_is_caught() {
        let verdict = check(&acked(0..3), &record(vec![Msg(0), Msg(2), Msg(1)]));
        assert_eq!((verdict.reorders, verdict.silent_losses), (1, 0));
        assert_eq!(verdict.violations[0].seq, 1);
    }

    #[test]
    fn a_loss_inside_an_announced_range_is_counted_not_failed() {
        let verdict = check(
            &acked(0..6),
            &record(vec![Msg(0), Msg(1), Announced(Cause::Gap), Msg(4), Msg(5)]),
        );
        assert!(verdict.holds(), "{verdict:?}");
        assert_eq!(verdict.announced_losses.get("gap"), Some(&2));
    }

    #[test]
    fn a_loss_outside_every_announced_range_is_caught() {
        // The gap covers 2; 5 went missing later, unannounced.
        let verdict = check(
            &acked(0..7),
            &record(vec![
                Msg(0),
                Msg(1),
                Announced(Cause::NotRecovered),
                Msg(3),
                Msg(4),
                Msg(6),
            ]),
        );
        assert_eq!(verdict.silent_losses, 1);
        assert_eq!(verdict.announced_losses.get("recovered_false"), Some(&1));
        assert_eq!(verdict.violations[0].seq, 5);
    }

    #[test]
    fn a_gap_before_anything_arrived_covers_the_start_and_one_at_the_end_the_rest() {
        let verdict = check(
            &acked(0..5),
            &record(vec![Announced(Cause::Gap), Msg(2), Announced(Cause::Gap)]),
        );
        assert!(verdict.holds(), "{verdict:?}");
        assert_eq!(verdict.announced_losses.get("gap"), Some(&4));
    }

    #[test]
    fn unacknowledged_messages_may_arrive_or_not() {
        // 1 was never acknowledged: its absence is no loss; 3 arrived anyway, which is fine.
        let verdict = check(&acked([0, 2]), &record(vec![Msg(0), Msg(2), Msg(3)]));
        assert!(verdict.holds(), "{verdict:?}");
    }
}
