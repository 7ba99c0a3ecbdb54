//! Why the edge closes a connection, as its close frame says it: a worker's disconnect, or an
//! authentication that failed.

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
