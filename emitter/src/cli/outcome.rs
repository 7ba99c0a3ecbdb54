//! What a run of the command came to, as its exit status.

use std::process::ExitCode;

use crate::{EmitError, InboxError};
use ferrocast_protocol::envelope::EnvelopeError;
use ferrocast_protocol::names::NameError;

/// The exit statuses, for `--help`: kept in step with [`Outcome`].
pub(super) const EXIT_STATUS: &str = "\
Exit status:
  0  everything was published (or done)
  1  something else failed (e.g. Redis refused a publish, standard output closed)
  2  bad input: an invalid argument (usage errors included) or --stdin line; with --stdin, every
     valid line was still published
  3  Redis (or the --edge) unavailable: something was not published (with --stdin, stderr names
     the lines); try again later";

/// How a run ended, as the process's exit status. A run with several problems ends with the
/// most pressing: `Unavailable`, then `Failed`, then `BadInput`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything was published (or done): 0.
    Done,
    /// Some input (an argument, a `--stdin` line) was invalid; everything valid was published: 2.
    BadInput,
    /// Something else failed, e.g. Redis refused a publish or standard output closed: 1.
    Failed,
    /// Redis could not be reached, so something was not published; trying again later may
    /// work: 3.
    Unavailable,
}

impl Outcome {
    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Failed => 1,
            Outcome::BadInput => 2,
            Outcome::Unavailable => 3,
        }
    }

    /// How a run that failed with `error` ended, from the typed errors in its chain.
    pub fn of_error(error: &anyhow::Error) -> Outcome {
        for cause in error.chain() {
            if let Some(e) = cause.downcast_ref::<EmitError>() {
                return Outcome::of_emit(e);
            }
            if let Some(e) = cause.downcast_ref::<InboxError>() {
                return match e {
                    InboxError::InvalidUrl(_) | InboxError::InvalidSetting(_) => Outcome::BadInput,
                    e if e.is_transient() => Outcome::Unavailable,
                    _ => Outcome::Failed,
                };
            }
            if let Some(e) = cause.downcast_ref::<super::EdgeError>() {
                return Outcome::of_edge(e);
            }
            if cause.is::<NameError>() || cause.is::<EnvelopeError>() || cause.is::<BadArgument>() {
                return Outcome::BadInput;
            }
        }
        Outcome::Failed
    }

    /// How a request to the edge's API that failed with `error` counts.
    pub fn of_edge(error: &super::EdgeError) -> Outcome {
        match error {
            super::EdgeError::Unavailable(_) => Outcome::Unavailable,
            e if e.is_bad_input() => Outcome::BadInput,
            _ => Outcome::Failed,
        }
    }

    /// How a message that failed with `error` counts.
    pub fn of_emit(error: &EmitError) -> Outcome {
        match error {
            EmitError::Unavailable(_) => Outcome::Unavailable,
            EmitError::Redis(_) | EmitError::Reply(_) => Outcome::Failed,
            EmitError::InvalidName(_)
            | EmitError::InvalidJson(_)
            | EmitError::UnsupportedData(_)
            | EmitError::InvalidUrl(_)
            | EmitError::Envelope(_)
            | EmitError::NotACall => Outcome::BadInput,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(outcome.code())
    }
}

/// An argument that clap accepted but the command cannot use (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct BadArgument(pub(super) String);
