//! Where `--stdin`'s pipelines go: Redis through the emitter library, or an edge's HTTP API,
//! and what became of each line there.

use serde_json::Value;

use super::super::Outcome;
use super::super::edge::{Edge, EdgeError};
use crate::{EmitError, Emitter, Message};

/// Where the lines are published.
pub(in crate::cli) enum Destination<'a> {
    /// Redis, through the emitter library: each pipeline one Redis pipeline.
    Redis(&'a Emitter),
    /// An edge's HTTP API: each pipeline one `POST /api/batch`.
    Edge(&'a Edge),
}

/// A line waiting for its pipeline: its number, the message as checked here, and for an edge
/// the API's publish body (JSON text).
pub(super) type PendingLine = (usize, Message, Option<String>);

/// Why a line (or a whole pipeline) was not published: how it counts, the error to print with
/// the lines, and a few words for the summary.
pub(super) struct Failure {
    /// How the line counts.
    pub(super) outcome: Outcome,
    /// The error, printed with the line numbers.
    pub(super) error: String,
    /// A few words for the summary.
    pub(super) reason: String,
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

impl Destination<'_> {
    /// Publishes `lines` in order: each line's offset or failure, or the failure of them all.
    pub(super) async fn publish(
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
