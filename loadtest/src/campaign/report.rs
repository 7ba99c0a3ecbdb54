//! What a campaign reports: every subscriber's record read against what was acknowledged, the
//! faults by kind, the recovery times, and who never saw the end; and the failure, naming the
//! seed, when the contract did not hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::bail;
use serde_json::json;

use super::subscriber::{Seen, Subscriber};
use super::{Audience, Campaign, Finished, Injected, World, checker};
use crate::cli::Common;
use crate::report::Report;

/// Reads every subscriber's record against what was acknowledged, and reports; fails the run,
/// naming the seed, if the contract did not hold.
pub(super) fn judge(
    common: &Common,
    campaign: &Campaign,
    world: &World,
    audience: &Audience,
    injected: &[Injected],
    finished: Finished,
) -> anyhow::Result<Report> {
    let Finished {
        library,
        api,
        ends,
        drained,
    } = finished;
    let mut acked = library.seqs;
    acked.extend(api.seqs);
    let mut records = Vec::new();
    let mut reconnects = 0;
    for ((name, seen), targets) in audience.seens.iter().zip(&audience.follows) {
        let seen = seen.lock();
        records.extend(Subscriber::records(name, targets, &seen));
        reconnects += seen.reconnects;
    }
    let verdict = checker::check(&acked, &records);

    let mut report = Report::new("campaign");
    report.add("seed", campaign.seed);
    report.add("duration_s", campaign.duration.as_secs());
    report.add("edges", world.edges.len());
    report.add("subscribers", audience.seens.len());
    report.add("faults", injected.len());
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for fault in injected {
        *by_kind.entry(fault.fault.name()).or_default() += 1;
    }
    report.add("faults_by_kind", json!(by_kind));
    report.add("published", library.tried + api.tried);
    report.add(
        "acknowledged",
        acked.values().map(|s| s.len() as u64).sum::<u64>(),
    );
    report.add("delivered", verdict.delivered);
    report.add("reconnects", reconnects);
    report.add("silent_losses", verdict.silent_losses);
    report.add("duplicates", verdict.duplicates);
    report.add("reorders", verdict.reorders);
    report.add("announced_losses", json!(verdict.announced_losses));
    for (name, value) in recovery_times(injected, &audience.seens) {
        report.add(name, value);
    }
    let violations: Vec<String> = verdict
        .violations
        .iter()
        .take(5)
        .map(ToString::to_string)
        .collect();
    report.add("violations", json!(violations));
    let unfinished = unfinished(&audience.seens, &ends);
    if !unfinished.is_empty() {
        report.add("unfinished", json!(unfinished));
    }
    if !verdict.holds() || drained.is_err() {
        report.print(common.json);
        let first = verdict.violations.first().map_or_else(
            || "a subscriber never saw the end".to_owned(),
            ToString::to_string,
        );
        bail!(
            "the contract did not hold (seed {}; rerun with --seed {}): {first}",
            campaign.seed,
            campaign.seed
        );
    }
    Ok(report)
}

/// Who never saw the last message of some target, and what it saw of it last.
fn unfinished(
    seens: &[(String, Arc<parking_lot::Mutex<Seen>>)],
    ends: &BTreeMap<String, u64>,
) -> Vec<String> {
    seens
        .iter()
        .flat_map(|(name, seen)| {
            let seen = seen.lock();
            seen.events
                .iter()
                .filter(|(target, _)| {
                    seen.highest.get(*target).copied() < ends.get(*target).copied()
                })
                .map(|(target, events)| {
                    let tail = &events[events.len().saturating_sub(3)..];
                    format!("{name} {target}: {} events, last {tail:?}", events.len())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Per fault, the time from its start until every subscriber got a message published after it
/// began (the slowest subscriber's); their p50, p99 and maximum, in milliseconds.
fn recovery_times(
    injected: &[Injected],
    seens: &[(String, Arc<parking_lot::Mutex<Seen>>)],
) -> Vec<(&'static str, u64)> {
    let mut times: Vec<u64> = injected
        .iter()
        .filter_map(|fault| {
            seens
                .iter()
                .map(|(_, seen)| {
                    seen.lock()
                        .arrivals
                        .iter()
                        .filter(|(_, published)| *published >= fault.started_ms)
                        .map(|(arrived, _)| arrived.saturating_sub(fault.started_ms))
                        .min()
                })
                .collect::<Option<Vec<u64>>>()
                .and_then(|per_subscriber| per_subscriber.into_iter().max())
        })
        .collect();
    times.sort_unstable();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    vec![
        ("recovery_p50_ms", at(0.5)),
        ("recovery_p99_ms", at(0.99)),
        ("recovery_max_ms", times.last().copied().unwrap_or_default()),
    ]
}
