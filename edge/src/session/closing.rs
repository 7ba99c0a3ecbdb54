//! Why the edge closes a connection, as its close frame says it: a worker's disconnect, or an
//! authentication that failed.

use ferrocast_protocol::close;

/// Why the edge closes a connection: the close frame's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Closing {
    /// The close code.
    pub(super) code: u16,
    /// The close frame's reason (short: it must fit a control frame).
    pub(super) reason: String,
}

/// Why authentication by `auth` frame failed. Each kind knows its close code, its close reason
/// and its `auth_failures` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No `auth` frame within `--auth-timeout`.
    TimedOut,
    /// The first frame was over the frame size limit.
    TooLarge,
    /// The connection closed, or broke, first.
    Closed,
    /// The client kept sending past the rate limit.
    RateLimited,
    /// The token was refused, by the verifier or the connect hook.
    InvalidToken {
        /// Why, as the `auth_failures` label says it (`token_expired`, `hook_refused`, ...).
        label: &'static str,
    },
    /// The connect hook gave no answer in time.
    HookUnavailable,
    /// The first frame was not `auth`.
    NoAuthFrame,
    /// Encryption is required (`--require-encryption` or the token's `enc`) and the `auth`
    /// frame did not ask for it.
    EncryptionRequired,
    /// The `auth` frame's encryption key was refused.
    BadKey(crate::encryption::agreement::BadKey),
}

impl AuthFailure {
    /// The close code: 1009 for a frame over the limit, 1013 when the connect hook gave no
    /// answer (the back end's outage, not the token's fault), 4008 for a client that kept
    /// sending past the rate limit, 4004 for encryption required and not asked for, 1008 for a
    /// bad encryption key, 4001 for everything else.
    pub(super) fn code(self) -> u16 {
        match self {
            AuthFailure::TooLarge => close::TOO_BIG,
            AuthFailure::HookUnavailable => close::TRY_LATER,
            AuthFailure::RateLimited => close::RATE_LIMITED,
            AuthFailure::EncryptionRequired => close::ENCRYPTION_REQUIRED,
            AuthFailure::BadKey(_) => close::POLICY,
            AuthFailure::TimedOut
            | AuthFailure::Closed
            | AuthFailure::InvalidToken { .. }
            | AuthFailure::NoAuthFrame => close::AUTH_FAILED,
        }
    }

    /// The close frame's reason.
    pub(super) fn reason(self) -> &'static str {
        match self {
            AuthFailure::TimedOut => "authentication timed out",
            AuthFailure::TooLarge => "frame too large",
            AuthFailure::Closed => "connection closed before authentication",
            AuthFailure::RateLimited => "rate limit exceeded",
            AuthFailure::InvalidToken { .. } => "invalid token",
            AuthFailure::HookUnavailable => "authentication unavailable; try again later",
            AuthFailure::NoAuthFrame => "the first frame must be auth",
            AuthFailure::EncryptionRequired => ENCRYPTION_REQUIRED,
            AuthFailure::BadKey(bad) => bad.reason(),
        }
    }

    /// The `auth_failures` metric label.
    pub(super) fn label(self) -> &'static str {
        match self {
            AuthFailure::TimedOut => "timeout",
            AuthFailure::TooLarge => "too_large",
            AuthFailure::Closed => "closed",
            AuthFailure::RateLimited => "rate_limited",
            AuthFailure::InvalidToken { label } => label,
            AuthFailure::HookUnavailable => "hook_unavailable",
            AuthFailure::NoAuthFrame => "no_auth_frame",
            AuthFailure::EncryptionRequired => "encryption_required",
            AuthFailure::BadKey(_) => "bad_encryption_key",
        }
    }
}

/// The close reason for a client that did not set encryption up when it had to (4004).
pub(super) const ENCRYPTION_REQUIRED: &str = "encryption required";
