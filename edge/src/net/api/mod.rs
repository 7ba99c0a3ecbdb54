//! The internal listener's routes: probes, metrics, and the HTTP API (docs/protocol.md, part 3).
//!
//! The API publishes exactly as the emitter does (the bus runs the same script with the same
//! envelope), so history, resume and idempotent ids hold for every route; in single-node mode it
//! publishes on the in-process bus. Every answer of the API is JSON; every error is
//! `{"error":{"code":C,"message":M}}` with a part A code.

mod error;
mod history;
mod presence;
mod publish;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;

pub use error::ApiError;

use crate::bus::Bus;
use crate::ops::metrics::{ApiLabel, metrics};
use crate::session::Shared;

/// Largest request body, in bytes (docs/protocol.md, part 3); larger ones get 413 `TOO_LARGE`.
pub const MAX_BODY: usize = 1024 * 1024;

/// Requests other than the probes served at once (metrics and the API); more wait for a place
/// for up to [`SLOT_WAIT`], then get 503. Probes take no place: nothing can queue them.
const SLOTS: usize = 64;
/// Longest a request waits for one of the [`SLOTS`].
const SLOT_WAIT: Duration = Duration::from_secs(5);

/// What the API's handlers share.
pub(crate) struct Api<B> {
    shared: Arc<Shared<B>>,
    keys: Vec<String>,
}

/// The routes of the internal listener.
pub fn router<B: Bus>(shared: Arc<Shared<B>>) -> Router {
    let api = Arc::new(Api {
        keys: shared.config.api_keys(),
        shared: shared.clone(),
    });
    let routes = Router::new()
        .route("/api/publish", post(publish::publish::<B>))
        .route("/api/batch", post(publish::batch::<B>))
        .route("/api/join", post(publish::join::<B>))
        .route("/api/leave", post(publish::leave::<B>))
        .route("/api/disconnect", post(publish::disconnect::<B>))
        .route("/api/presence", get(presence::list::<B>))
        .route("/api/presence_stats", get(presence::stats::<B>))
        .route("/api/history", get(history::page::<B>))
        .route_layer(middleware::from_fn_with_state(api.clone(), authorize::<B>))
        .with_state(api)
        .route("/metrics", get(|| async { metrics().render() }))
        .route_layer(middleware::from_fn_with_state(
            Arc::new(Semaphore::new(SLOTS)),
            bounded,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::<B>))
        .with_state(shared)
        .merge(routes)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "UNKNOWN_TYPE", "no such route")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_FRAME",
                "wrong method for this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(count))
}

/// Serves a request once one of the [`SLOTS`] is free; 503 if none is within [`SLOT_WAIT`].
async fn bounded(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(SLOT_WAIT, slots.acquire()).await {
        Ok(Ok(_slot)) => next.run(request).await,
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "too many requests in progress; retry",
        )
        .into_response(),
    }
}

async fn ready<B: Bus>(State(shared): State<Arc<Shared<B>>>) -> Response {
    match shared.not_ready() {
        None => "ready\n".into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// Refuses API requests without one of the configured keys (401), and every API request when
/// none is configured (404: the API is off).
async fn authorize<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if api.keys.is_empty() {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "UNKNOWN_TYPE",
            "the HTTP API is off: configure --api-key",
        )
        .into_response();
    }
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match offered {
        Some(key)
            if api
                .keys
                .iter()
                .any(|k| same(k.as_bytes(), key.trim().as_bytes())) =>
        {
            next.run(request).await
        }
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "FORBIDDEN",
                "missing or wrong API key (Authorization: Bearer KEY, or X-API-Key: KEY)",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Compares two keys in time that depends on their lengths only, not on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts every request by route and status in `/metrics`.
async fn count(request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let response = next.run(request).await;
    metrics()
        .api_requests
        .get_or_create(&ApiLabel {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// A fixed label per route, so no client can grow the metric's label set.
fn route_label(path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/api/publish" => "publish",
        "/api/batch" => "batch",
        "/api/join" => "join",
        "/api/leave" => "leave",
        "/api/disconnect" => "disconnect",
        "/api/presence" => "presence",
        "/api/presence_stats" => "presence_stats",
        "/api/history" => "history",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }
}
