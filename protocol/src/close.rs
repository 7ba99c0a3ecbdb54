//! WebSocket close codes and `error` frame codes: the numbers and words clients act on.

use serde::{Deserialize, Serialize};

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The edge is going away (drain, deploy): reconnect with jitter and resume.
pub const GOING_AWAY: u16 = 1001;
/// Policy violation.
pub const POLICY: u16 = 1008;
/// An inbound frame was larger than allowed.
pub const TOO_BIG: u16 = 1009;
/// Internal error on the edge.
pub const INTERNAL: u16 = 1011;
/// Overloaded: reconnect later with backoff.
pub const TRY_LATER: u16 = 1013;
/// Authentication failed or timed out.
pub const AUTH_FAILED: u16 = 4001;
/// Nothing arrived within the idle timeout.
pub const HEARTBEAT_TIMEOUT: u16 = 4002;
/// The token expired without a refresh.
pub const TOKEN_EXPIRED: u16 = 4003;
/// Encryption (v1.2, part E) was required and the client did not set it up in its first
/// exchange.
pub const ENCRYPTION_REQUIRED: u16 = 4004;
/// The client kept exceeding the inbound rate.
pub const RATE_LIMITED: u16 = 4008;
/// The client could not keep up with its outbound queue.
pub const SLOW_CONSUMER: u16 = 4009;
/// Disconnected by the application, with a reason.
pub const DISCONNECTED: u16 = 4010;

/// The `code` of an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame could not be decoded or lacks a required field.
    BadFrame,
    /// The frame's `type` is not one this edge knows.
    UnknownType,
    /// The token does not allow this.
    Forbidden,
    /// The room name breaks the naming rules.
    InvalidRoom,
    /// The connection is in as many rooms as allowed.
    TooManyRooms,
    /// The connection is not in that room.
    NotJoined,
    /// Too many frames; slow down.
    RateLimited,
    /// The frame or its data is too large.
    TooLarge,
    /// The bus (Redis) is unreachable; retry.
    Unavailable,
    /// Something went wrong on the edge.
    Internal,
    /// No worker answered an `rpc` within its timeout (v1.2).
    Timeout,
    /// The worker refused an `rpc` (v1.2): its message, and any `data` it gave.
    RpcError,
}

impl ErrorCode {
    /// The code as the wire writes it (`BAD_FRAME`, ...): the HTTP API's error bodies use the
    /// same names.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::InvalidRoom => "INVALID_ROOM",
            ErrorCode::TooManyRooms => "TOO_MANY_ROOMS",
            ErrorCode::NotJoined => "NOT_JOINED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::RpcError => "RPC_ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn each_code_is_named_as_serde_writes_it() {
        for code in [
            ErrorCode::BadFrame,
            ErrorCode::UnknownType,
            ErrorCode::Forbidden,
            ErrorCode::InvalidRoom,
            ErrorCode::TooManyRooms,
            ErrorCode::NotJoined,
            ErrorCode::RateLimited,
            ErrorCode::TooLarge,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
            ErrorCode::Timeout,
            ErrorCode::RpcError,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
