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
//! edge is unavailable) the run stops: stderr names the lines read but not published and nothing after
//! them is read, so the caller knows where to resume. A summary line on stderr ends every run.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context;
use ferrocast_protocol::keys::Target;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::time::Instant;

use super::Outcome;
use super::edge::{Edge, EdgeError, publish_body};
use crate::{EmitError, Emitter, Message};

/// Most lines published in one pipeline.
const BATCH: usize = 256;

/// Longest a line waits for others to share its pipeline: long enough for a fast producer to
/// fill pipelines, short enough to go unnoticed by someone watching a `tail -f`.
const LINGER: Duration = Duration::from_millis(20);

/// Most bytes of lines one `POST /api/batch` carries: the edge takes bodies of up to 1 MiB,
/// and the batch's own brackets need a few more.
const API_BATCH_BYTES: usize = 1024 * 1024 - 1024;

/// Bytes of standard input buffered: room for a full pipeline of typical lines, so a fast
/// producer's lines are at hand when they are wanted.
pub(super) const BUFFER: usize = 64 * 1024;

/// Where the lines are published.
pub(super) enum Destination<'a> {
    /// Redis, through the emitter library: each pipeline one Redis pipeline.
    Redis(&'a Emitter),
    /// An edge's HTTP API: each pipeline one `POST /api/batch`.
    Edge(&'a Edge),
}

/// A line waiting for its pipeline: its number, the message as checked here, and for an edge
/// the API's publish body (JSON text).
type PendingLine = (usize, Message, Option<String>);

/// Why a line (or a whole pipeline) was not published: how it counts, the error to print with
/// the lines, and a few words for the summary.
struct Failure {
    outcome: Outcome,
    error: String,
    reason: String,
}

impl Failure {
    fn emit(error: &EmitError) -> Failure {
        Failure {
            outcome: Outcome::of_emit(error),
            error: error.to_string(),
            reason: match error {
                EmitError::Unavailable(_) => "Redis is unavailable".to_owned(),
                other => other.to_string(),
            },
        }
    }

    fn edge(error: &EdgeError) -> Failure {
        Failure {
            outcome: Outcome::of_edge(error),
            error: error.to_string(),
            reason: match error {
                EdgeError::Unavailable(_) => "the edge is unavailable".to_owned(),
                other => other.to_string(),
            },
        }
    }
}

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

impl Destination<'_> {
    /// Publishes `lines` in order: each line's offset or failure, or the failure of them all.
    async fn publish(
        &self,
        lines: Vec<PendingLine>,
    ) -> Result<Vec<Result<String, Failure>>, Failure> {
        match self {
            Destination::Redis(emitter) => {
                let messages: Vec<Message> = lines.into_iter().map(|(_, m, _)| m).collect();
                let results = emitter.emit_batch(&messages).await;
                let results = results.map_err(|e| Failure::emit(&e))?;
                Ok(results
                    .into_iter()
                    .map(|r| {
                        r.map(|offset| offset.to_string())
                            .map_err(|e| Failure::emit(&e))
                    })
                    .collect())
            }
            Destination::Edge(edge) => {
                let count = lines.len();
                let bodies: Vec<String> = lines.into_iter().filter_map(|(.., body)| body).collect();
                let batch = format!("{{\"messages\":[{}]}}", bodies.join(","));
                let answer = edge.post_text("/api/batch", batch).await;
                let answer = answer.map_err(|e| Failure::edge(&e))?;
                let results = answer["results"].as_array().filter(|r| r.len() == count);
                let Some(results) = results else {
                    // Not "unavailable": the edge may have published some of them, and a
                    // retry would publish those twice.
                    let error =
                        format!("the edge's answer does not have {count} results: {answer}");
                    return Err(Failure {
                        outcome: Outcome::Failed,
                        reason: "the edge's answer could not be read".to_owned(),
                        error,
                    });
                };
                Ok(results.iter().map(edge_result).collect())
            }
        }
    }
}

/// One entry of `/api/batch`'s answer: `{"offset":O,..}` or `{"error":{"code":C,"message":M}}`.
fn edge_result(entry: &Value) -> Result<String, Failure> {
    if let Some(offset) = entry["offset"].as_str() {
        return Ok(offset.to_owned());
    }
    let code = entry["error"]["code"].as_str().unwrap_or("no code");
    let message = entry["error"]["message"].as_str().unwrap_or("no message");
    let error = format!("the edge refused it ({code}): {message}");
    let outcome = match code {
        "UNAVAILABLE" => Outcome::Unavailable,
        _ => Outcome::BadInput,
    };
    Err(Failure {
        outcome,
        reason: match outcome {
            Outcome::Unavailable => "the edge is unavailable".to_owned(),
            _ => error.clone(),
        },
        error,
    })
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

/// One line of input.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    room: Option<String>,
    user: Option<String>,
    client: Option<String>,
    #[serde(default)]
    all: bool,
    event: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    except: Vec<String>,
}

/// The message on `line` (its end of line included or not), with `except` added to its own,
/// and, when `api` asks for it, the same as the edge API's publish body; `None` for a blank
/// line.
fn parse(
    line: &[u8],
    except: &[String],
    api: bool,
) -> anyhow::Result<Option<(Message, Option<String>)>> {
    let text = std::str::from_utf8(line).context("not UTF-8")?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let line: Line =
        serde_json::from_str(text).context("not a JSON object of the expected shape")?;
    let Some(target) = Target::one_of(
        line.room.as_deref(),
        line.user.as_deref(),
        line.client.as_deref(),
        line.all,
    ) else {
        anyhow::bail!("give exactly one of \"room\", \"user\", \"client\" or \"all\":true");
    };
    let target = target?;
    let data = line.data.map_or("null", RawValue::get);
    let mut all_except = line.except;
    all_except.extend_from_slice(except);
    let message = Message::new(
        target,
        &line.event,
        data.as_bytes().to_vec(),
        all_except.clone(),
        None,
    )?;
    if !api {
        return Ok(Some((message, None)));
    }
    let target = match (&line.room, &line.user, &line.client) {
        (Some(room), ..) => ("room", Value::from(room.as_str())),
        (_, Some(user), _) => ("user", Value::from(user.as_str())),
        (.., Some(client)) => ("client", Value::from(client.as_str())),
        _ => ("all", Value::Bool(true)),
    };
    let body = publish_body(target, &line.event, data, &all_except);
    if body.len() > API_BATCH_BYTES {
        anyhow::bail!("too large for the edge's API (its requests hold at most 1 MiB)");
    }
    Ok(Some((message, Some(body))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(line: &str) -> anyhow::Result<Option<(Message, Option<String>)>> {
        parse(line.as_bytes(), &[], false)
    }

    #[test]
    fn lines() {
        assert!(matches!(
            parsed(r#"{"room":"r","event":"e","data":{"a":1}}"#),
            Ok(Some(_))
        ));
        assert!(matches!(
            parsed("{\"all\":true,\"event\":\"e\"}\r\n"),
            Ok(Some(_))
        ));
        assert!(matches!(parsed(" \r\n"), Ok(None)));
        for bad in [
            r#"{"room":"r","user":"u","event":"e"}"#,
            r#"{"room":"bad room","event":"e"}"#,
            r#"{"room":"r","event":"e","data":{"#,
            r#"{"room":"r","event":"e","colour":1}"#,
            r#"{"room":"r","event":"e","data":1e400}"#,
            r#"{"room":"r","event":"e","data":"\ud800"}"#,
        ] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
        let error = parse(b"{\"all\":true,\"event\":\"\xff\"}", &[], false).unwrap_err();
        assert!(format!("{error:#}").starts_with("not UTF-8"), "{error:#}");
    }

    #[test]
    fn api_bodies_carry_the_line_as_written() {
        let line = r#"{"user":"u","event":"e","data":{"z":1,"a":12345678901234567890.5}}"#;
        let (_, body) = parse(line.as_bytes(), &["c1".to_owned()], true)
            .expect("a good line")
            .expect("not blank");
        assert_eq!(
            body.as_deref(),
            Some(
                r#"{"user":"u","event":"e","data":{"z":1,"a":12345678901234567890.5},"except":["c1"]}"#
            )
        );
        let all = r#"{"all":true,"event":"e"}"#;
        let (_, body) = parse(all.as_bytes(), &[], true)
            .expect("good")
            .expect("not blank");
        assert_eq!(
            body.as_deref(),
            Some(r#"{"all":true,"event":"e","data":null,"except":[]}"#)
        );
        let (_, body) = parse(all.as_bytes(), &[], false)
            .expect("good")
            .expect("not blank");
        assert_eq!(body, None, "no body for Redis");
    }

    #[test]
    fn batch_entries_are_offsets_or_failures_that_count_as_their_code_says() {
        assert_eq!(
            edge_result(&json!({"offset": "1-0_1-0", "id": "x"})).ok(),
            Some("1-0_1-0".to_owned())
        );
        let refused = edge_result(&json!({"error": {"code": "INVALID_ROOM", "message": "no"}}));
        let refused = refused.expect_err("a failure");
        assert_eq!(refused.outcome, Outcome::BadInput);
        assert_eq!(refused.error, "the edge refused it (INVALID_ROOM): no");
        let later = edge_result(&json!({"error": {"code": "UNAVAILABLE", "message": "down"}}));
        let later = later.expect_err("a failure");
        assert_eq!(later.outcome, Outcome::Unavailable);
        assert_eq!(later.reason, "the edge is unavailable");
        let odd = edge_result(&json!(null)).expect_err("a failure");
        assert_eq!(odd.outcome, Outcome::BadInput);
    }

    #[test]
    fn line_numbers_are_named_in_ranges() {
        assert_eq!(name_lines(&[4]), "line 4");
        assert_eq!(name_lines(&[5, 6, 7, 9, 11, 12]), "lines 5-7, 9, 11-12");
    }
}
