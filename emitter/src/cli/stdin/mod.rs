//! `emitter send --stdin`: one message per line of standard input, published as the lines come,
//! through Redis or, with `--edge`, through an edge's HTTP API (`POST /api/batch`).
//!
//! Lines go out in pipelines. A pipeline is sent when it holds [`BATCH`] lines, when its first
//! line has waited [`LINGER`], or at the end of the input: `cat big.jsonl | emitter send --stdin`
//! gets full pipelines, and `tail -f events | emitter send --stdin` publishes each line within
//! milliseconds instead of waiting for 255 more or for an end that never comes.
//!
//! Every line is accounted for. A bad one (not UTF-8, not a JSON object of the expected shape, a
//! bad name, data that MessagePack clients cannot be sent) is reported on stderr with its number
//! and reason, and the valid ones are still published. When nothing can be sent (Redis or the
//! edge is unavailable) the run stops: stderr names the lines read but not published and nothing
//! after them is read, so the caller knows where to resume. A summary line on stderr ends every
//! run.
//!
//! Lines are checked here ([`line`]) and published to Redis or an edge ([`destination`]).

mod destination;
mod line;

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::time::Instant;

use super::Outcome;
use destination::PendingLine;
use line::{API_BATCH_BYTES, parse};

pub(in crate::cli) use destination::Destination;

/// Most lines published in one pipeline.
const BATCH: usize = 256;

/// Longest a line waits for others to share its pipeline: long enough for a fast producer to
/// fill pipelines, short enough to go unnoticed by someone watching a `tail -f`.
const LINGER: Duration = Duration::from_millis(20);

/// Bytes of standard input buffered: room for a full pipeline of typical lines, so a fast
/// producer's lines are at hand when they are wanted.
pub(super) const BUFFER: usize = 64 * 1024;

/// Publishes each line of `input` (with `except` added to its own) to `to`, until the input
/// ends or nothing more can be published; prints one offset per published line on stdout, the
/// problems and a summary on stderr. Returns how the run went.
pub(super) async fn send(
    to: Destination<'_>,
    mut input: impl AsyncBufRead + Unpin,
    except: &[String],
) -> Outcome {
    let mut run = Run {
        lines: 0,
        published: 0,
        bad: 0,
        unpublished: Vec::new(),
        pending: Vec::new(),
        pending_bytes: 0,
        deadline: None,
        outcome: Outcome::Done,
    };
    let stop = run.read(&to, &mut input, except).await.err();
    run.summarize(stop)
}

/// What became of the lines read so far.
struct Run {
    /// Number of the last line read (blank lines count too).
    lines: usize,
    /// Lines published.
    published: usize,
    /// Lines refused as bad input.
    bad: usize,
    /// Valid lines that were not published, by number.
    unpublished: Vec<usize>,
    /// Valid lines waiting for their pipeline.
    pending: Vec<PendingLine>,
    /// Bytes of the pending lines' API bodies (with `--edge`).
    pending_bytes: usize,
    /// When the oldest pending line stops waiting for company.
    deadline: Option<Instant>,
    /// The worst that happened to a line.
    outcome: Outcome,
}

/// Why a run ended before its input did.
struct Stop {
    outcome: Outcome,
    reason: String,
}

impl Run {
    /// Reads and publishes until the input ends (`Ok`) or the run must stop (`Err`).
    async fn read(
        &mut self,
        to: &Destination<'_>,
        input: &mut (impl AsyncBufRead + Unpin),
        except: &[String],
    ) -> Result<(), Stop> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = {
                // The read stays in flight while a pipeline goes out, so no input is lost to a
                // cancelled read and the next line is taken up as soon as it is complete.
                let read = input.read_until(b'\n', &mut line);
                tokio::pin!(read);
                loop {
                    tokio::select! {
                        // A line already at hand is taken without looking at the clock: a
                        // fast producer fills its pipelines (BATCH bounds the wait).
                        biased;
                        read = &mut read => break read,
                        () = linger(self.deadline) => self.publish(to).await?,
                    }
                }
            };
            match read {
                Ok(0) => return self.publish(to).await,
                Ok(_) => self.take(&line, except, to).await?,
                Err(e) => {
                    self.publish(to).await?;
                    return Err(Stop {
                        outcome: Outcome::Failed,
                        reason: format!("cannot read standard input: {e}"),
                    });
                }
            }
        }
    }

    /// Checks the next line and queues it, publishing the pipeline once it is full.
    async fn take(
        &mut self,
        line: &[u8],
        except: &[String],
        to: &Destination<'_>,
    ) -> Result<(), Stop> {
        self.lines += 1;
        match parse(line, except, matches!(to, Destination::Edge(_))) {
            Ok(None) => Ok(()),
            Ok(Some((message, body))) => {
                let size = body.as_ref().map_or(0, |b| b.len() + 1);
                if self.pending_bytes + size > API_BATCH_BYTES {
                    // One request would be too large for the edge: the pipeline goes first.
                    self.publish(to).await?;
                }
                if self.pending.is_empty() {
                    self.deadline = Some(Instant::now() + LINGER);
                }
                self.pending_bytes += size;
                self.pending.push((self.lines, message, body));
                if self.pending.len() >= BATCH {
                    self.publish(to).await?;
                }
                Ok(())
            }
            Err(e) => {
                eprintln!("line {}: {e:#}", self.lines);
                self.bad += 1;
                self.outcome = self.outcome.max(Outcome::BadInput);
                Ok(())
            }
        }
    }

    /// Publishes the pending lines and prints their offsets. Stops the run when nothing could
    /// be sent (trying the next lines would only fail the same way, and stopping keeps every
    /// line before the last one read accounted for), when Redis (or the edge) was unavailable
    /// for some of them, or when an offset cannot be printed.
    async fn publish(&mut self, to: &Destination<'_>) -> Result<(), Stop> {
        self.deadline = None;
        self.pending_bytes = 0;
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let numbers: Vec<usize> = pending.iter().map(|(number, ..)| *number).collect();
        let results = match to.publish(pending).await {
            Ok(results) => results,
            Err(failure) => {
                eprintln!("{} not published: {}", name_lines(&numbers), failure.error);
                self.unpublished.extend(numbers);
                return Err(Stop {
                    outcome: failure.outcome,
                    reason: failure.reason,
                });
            }
        };
        let mut stdout = std::io::stdout().lock();
        let mut printed = Ok(());
        let mut unavailable = None;
        for (number, result) in numbers.into_iter().zip(results) {
            match result {
                Ok(offset) => {
                    self.published += 1;
                    if printed.is_ok() {
                        printed = writeln!(stdout, "{offset}");
                    }
                }
                Err(failure) => {
                    eprintln!("line {number}: not published: {}", failure.error);
                    self.unpublished.push(number);
                    if failure.outcome == Outcome::Unavailable {
                        unavailable = Some(failure.reason);
                    }
                    self.outcome = self.outcome.max(failure.outcome);
                }
            }
        }
        if let Err(e) = printed.and_then(|()| stdout.flush()) {
            return Err(Stop {
                outcome: Outcome::Failed,
                reason: format!("cannot write to standard output: {e}"),
            });
        }
        match unavailable {
            Some(reason) => Err(Stop {
                outcome: Outcome::Unavailable,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Prints the summary line; the run's outcome.
    fn summarize(self, stop: Option<Stop>) -> Outcome {
        let mut summary = format!(
            "published {}, bad {}, not published {}",
            self.published,
            self.bad,
            self.unpublished.len()
        );
        if !self.unpublished.is_empty() {
            let _ = write!(summary, " ({})", name_lines(&self.unpublished));
        }
        if let Some(stop) = &stop {
            let _ = write!(
                summary,
                "; stopped after line {} ({}): later lines were not read",
                self.lines, stop.reason
            );
        }
        eprintln!("{summary}");
        stop.map_or(self.outcome, |stop| self.outcome.max(stop.outcome))
    }
}

/// Completes at `deadline`, or never without one.
async fn linger(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// "line 4", or "lines 5-7, 9": line numbers (ascending) with runs shortened.
fn name_lines(numbers: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &n in numbers {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == n => *last = n,
            _ => ranges.push((n, n)),
        }
    }
    let named: Vec<String> = ranges
        .iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect();
    let noun = if numbers.len() == 1 { "line" } else { "lines" };
    format!("{noun} {}", named.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_are_named_in_ranges() {
        assert_eq!(name_lines(&[4]), "line 4");
        assert_eq!(name_lines(&[5, 6, 7, 9, 11, 12]), "lines 5-7, 9, 11-12");
    }
}
