//! The API's errors: a status and `{"error":{"code":C,"message":M}}`, codes as in part A.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrocast_emitter::EmitError;
use ferrocast_protocol::names::NameError;
use ferrocast_protocol::publish_body::BodyTargetError;
use serde_json::json;

use crate::bus::BusError;

/// Seconds a client is told to wait (`Retry-After`) while the bus is down.
const RETRY_AFTER_SECS: u64 = 1;

/// A refused request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error answer.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// A body that is not what the route expects.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_FRAME", message)
    }

    /// The bus is down: 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }

    /// The error as a batch entry: `{"code":C,"message":M}`.
    pub fn entry(&self) -> serde_json::Value {
        json!({"code": self.code, "message": self.message})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({"error": self.entry()}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

impl From<BusError> for ApiError {
    fn from(error: BusError) -> ApiError {
        match error {
            BusError::Unavailable(e) | BusError::Full(e) => ApiError::unavailable(e),
            BusError::Refused(e) => ApiError::bad(e),
        }
    }
}

/// A message the emitter's checks refuse: a bad name, JSON, or data MessagePack cannot carry.
impl From<EmitError> for ApiError {
    fn from(error: EmitError) -> ApiError {
        match error {
            EmitError::InvalidName(
                e
                @ (NameError::Length { what: "room", .. } | NameError::Character { what: "room" }),
            ) => ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ROOM", e.to_string()),
            EmitError::Unavailable(e) => ApiError::unavailable(e),
            other => ApiError::bad(other.to_string()),
        }
    }
}

/// A publish body without exactly one target, or whose target's name the emitter would refuse.
impl From<BodyTargetError> for ApiError {
    fn from(error: BodyTargetError) -> ApiError {
        match error {
            BodyTargetError::NotOne => ApiError::bad(error.to_string()),
            BodyTargetError::Name(e) => EmitError::from(e).into(),
        }
    }
}
