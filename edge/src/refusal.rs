//! Why a request was refused, as the client is told: a frame's `error` answer, or the HTTP
//! API's error body (whose status follows from the code). The one mapping from what the bus
//! says to what the client is told is here.

use ferrocast_protocol::close::ErrorCode;

use crate::bus::BusError;

/// How long a client is told to wait after `UNAVAILABLE` (the bus reconnects within about this).
const UNAVAILABLE_RETRY_MS: u64 = 1000;

/// Why a frame was refused: what its `error` answer says.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The error code.
    pub(crate) code: ErrorCode,
    /// What went wrong, for people.
    pub(crate) message: String,
    /// Milliseconds before the same frame can succeed (`RATE_LIMITED`, `UNAVAILABLE`).
    pub(crate) retry_after: Option<u64>,
    /// The close code to close the connection with after the answer, for a client that kept
    /// ignoring its refusals.
    pub(crate) close_after: Option<u16>,
}

impl Refusal {
    /// A refusal with `code`; `UNAVAILABLE` says to retry after a second.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            retry_after: (code == ErrorCode::Unavailable).then_some(UNAVAILABLE_RETRY_MS),
            close_after: None,
        }
    }

    /// `RATE_LIMITED`, to retry after `ms`.
    pub(crate) fn rate_limited(message: impl Into<String>, ms: u64) -> Refusal {
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
