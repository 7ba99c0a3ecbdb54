//! The API's errors: a status and `{"error":{"code":C,"message":M}}`, codes as in part A.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrocast_emitter::EmitError;
use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::names::NameError;
use ferrocast_protocol::publish_body::BodyTargetError;
use serde_json::json;

use crate::bus::BusError;
use crate::refusal::Refusal;

/// A refused request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds to wait before retrying (`Retry-After`).
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error answer.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A body that is not what the route expects.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_FRAME", message)
    }

    /// The bus is down: 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        Refusal::new(ErrorCode::Unavailable, message).into()
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
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A refusal as the API answers it: the same code and message as a client frame's `error`, with
/// the status that code means over HTTP.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let status = match refusal.code {
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            code: refusal.code.as_str(),
            message: refusal.message,
            retry_after: refusal.retry_after.map(|ms| ms.div_ceil(1000)),
        }
    }
}

/// What the bus says, as a client frame's refusal says it ([`Refusal`]'s one mapping).
impl From<BusError> for ApiError {
    fn from(error: BusError) -> ApiError {
        Refusal::from(error).into()
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
