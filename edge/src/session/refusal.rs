//! Why a client frame was refused, as its `error` answer says it, and the one mapping from what
//! the bus says to what the client is told; and why a connection is closed, as its close frame
//! says it.

use ferrocast_protocol::close::ErrorCode;

use crate::bus::BusError;

/// How long a client is told to wait after `UNAVAILABLE` (the bus reconnects within about this).
const UNAVAILABLE_RETRY_MS: u64 = 1000;

/// Why a frame was refused: what its `error` answer says.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// The error code.
    pub(super) code: ErrorCode,
    /// What went wrong, for people.
    pub(super) message: String,
    /// Milliseconds before the same frame can succeed (`RATE_LIMITED`, `UNAVAILABLE`).
    pub(super) retry_after: Option<u64>,
    /// The close code to close the connection with after the answer, for a client that kept
    /// ignoring its refusals.
    pub(super) close_after: Option<u16>,
}

impl Refusal {
    /// A refusal with `code`; `UNAVAILABLE` says to retry after a second.
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            retry_after: (code == ErrorCode::Unavailable).then_some(UNAVAILABLE_RETRY_MS),
            close_after: None,
        }
    }

    /// `RATE_LIMITED`, to retry after `ms`.
    pub(super) fn rate_limited(message: impl Into<String>, ms: u64) -> Refusal {
        Refusal {
            code: ErrorCode::RateLimited,
            message: message.into(),
            retry_after: Some(ms),
            close_after: None,
        }
    }
}

/// How long a client is told to wait when the upstream inbox is full: workers need a moment.
const INBOX_FULL_RETRY_MS: u64 = 5000;

/// The one mapping from what the bus says to what the client is told.
impl From<BusError> for Refusal {
    fn from(error: BusError) -> Refusal {
        match error {
            BusError::Unavailable(e) => Refusal::new(ErrorCode::Unavailable, e),
            BusError::Full(e) => Refusal {
                code: ErrorCode::Unavailable,
                message: e,
                retry_after: Some(INBOX_FULL_RETRY_MS),
                close_after: None,
            },
            BusError::Refused(e) => Refusal::new(ErrorCode::BadFrame, e),
        }
    }
}

/// Why the edge closes a connection: the close frame's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Closing {
    /// The close code.
    pub(super) code: u16,
    /// The close frame's reason (short: it must fit a control frame).
    pub(super) reason: String,
}

/// Why authentication by `auth` frame failed: how to close, and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthFailure {
    /// The close frame's reason.
    pub(super) reason: &'static str,
    /// The `auth_failures` metric label.
    pub(super) label: &'static str,
}

impl AuthFailure {
    /// The failure `label`, closing with `reason`.
    pub(super) fn new(reason: &'static str, label: &'static str) -> AuthFailure {
        AuthFailure { reason, label }
    }

    /// The close code: 1009 for a frame over the limit, 1013 when the connect hook gave no
    /// answer (the back end's outage, not the token's fault), 4008 for a client that kept
    /// sending past the rate limit, 4001 for everything else.
    pub(super) fn code(self) -> u16 {
        match self.label {
            "too_large" => ferrocast_protocol::close::TOO_BIG,
            "hook_unavailable" => ferrocast_protocol::close::TRY_LATER,
            "rate_limited" => ferrocast_protocol::close::RATE_LIMITED,
            _ => ferrocast_protocol::close::AUTH_FAILED,
        }
    }
}
