//! `POST /api/publish`, `/api/batch`, `/api/join`, `/api/leave` and `/api/disconnect`: each
//! builds the envelope the emitter would, checks it the same way, and publishes it on the bus.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use ferrocast_emitter::Message;
use ferrocast_protocol::keys::{Scope, Target};
use ferrocast_protocol::{Envelope, close};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{Api, ApiError, MAX_BODY};
use crate::bus::Bus;

/// Most messages in one `/api/batch`.
pub const MAX_BATCH: usize = 1000;

/// A message as the API takes it: `data` required.
type PublishBody = ferrocast_protocol::PublishBody<Box<RawValue>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    messages: Vec<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    user: Option<String>,
    client: Option<String>,
    room: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    user: Option<String>,
    client: Option<String>,
    code: Option<u16>,
    reason: Option<String>,
}

/// `POST /api/publish`.
pub(super) async fn publish<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: PublishBody = parse(body)?;
    api.ready()?;
    Ok(Json(api.publish(body).await?))
}

/// `POST /api/batch`: every message in order, each with its own result.
pub(super) async fn batch<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: BatchBody = parse(body)?;
    if body.messages.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "TOO_LARGE",
            format!(
                "{} messages; at most {MAX_BATCH} per batch",
                body.messages.len()
            ),
        ));
    }
    api.ready()?;
    let mut results = Vec::with_capacity(body.messages.len());
    // One after the other: messages to the same target keep the batch's order.
    for raw in body.messages {
        let result = match serde_json::from_str::<PublishBody>(raw.get()) {
            Ok(message) => api.publish(message).await,
            Err(e) => Err(ApiError::bad(format!("not a publish body: {e}"))),
        };
        results.push(result.unwrap_or_else(|error| json!({"error": error.entry()})));
    }
    Ok(Json(json!({ "results": results })))
}

/// `POST /api/join`: the target's sessions connected now join the room, on every edge.
pub(super) async fn join<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: MoveBody = parse(body)?;
    let target = session_target(body.user, body.client)?;
    api.control(Envelope::join(&target, &body.room)).await
}

/// `POST /api/leave`.
pub(super) async fn leave<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: MoveBody = parse(body)?;
    let target = session_target(body.user, body.client)?;
    api.control(Envelope::leave(&target, &body.room)).await
}

/// `POST /api/disconnect`: closes the target's sessions (4010 unless another 4010-4999 code).
pub(super) async fn disconnect<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: DisconnectBody = parse(body)?;
    let target = session_target(body.user, body.client)?;
    let code = body.code.unwrap_or(close::DISCONNECTED);
    let reason = body.reason.unwrap_or_default();
    api.control(Envelope::disconnect(&target, code, &reason))
        .await
}

impl<B: Bus> Api<B> {
    /// 503 while the bus is down, before anything is attempted.
    pub(super) fn ready(&self) -> Result<(), ApiError> {
        if self.shared.bus.is_ready() {
            Ok(())
        } else {
            Err(ApiError::unavailable("the bus is reconnecting; retry"))
        }
    }

    async fn publish(&self, body: PublishBody) -> Result<Value, ApiError> {
        let target = body.target()?;
        let mut envelope =
            Envelope::message(&target, &body.event, body.data.get().as_bytes().to_vec());
        envelope.except = body.except.clone();
        envelope.trace = ferrocast_emitter::current_traceparent();
        if let Some(id) = body.id {
            envelope.id = id;
        }
        // The emitter's own checks: names, JSON, what MessagePack clients can be sent.
        Message::from_envelope(&envelope)?;
        let offset = self
            .shared
            .bus
            .publish(&envelope, body.id.is_some())
            .await?;
        Ok(json!({"offset": offset.to_string(), "id": envelope.id.hyphenated().to_string()}))
    }

    async fn control(&self, envelope: Envelope) -> Result<Json<Value>, ApiError> {
        Message::from_envelope(&envelope)?;
        self.ready()?;
        self.shared.bus.publish(&envelope, false).await?;
        Ok(Json(json!({})))
    }
}

/// The user's or the client's sessions: exactly one of the two.
fn session_target(user: Option<String>, client: Option<String>) -> Result<Target, ApiError> {
    let target = match (user, client) {
        (Some(user), None) => Target::new(Scope::User, &user),
        (None, Some(client)) => Target::new(Scope::Client, &client),
        _ => return Err(ApiError::bad("give exactly one of \"user\" and \"client\"")),
    };
    Ok(target.map_err(ferrocast_emitter::EmitError::from)?)
}

/// The body as `T`: 413 over [`MAX_BODY`], 400 `BAD_FRAME` if it is not what the route expects.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "TOO_LARGE",
                format!("bodies are at most {MAX_BODY} bytes"),
            )
        } else {
            ApiError::bad(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("malformed body: {e}")))
}
