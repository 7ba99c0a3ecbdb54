//! The internal listener's routes: probes, metrics, and the HTTP API (docs/protocol.md, part 3).
//!
//! The API publishes exactly as the emitter does (the bus runs the same script with the same
//! envelope), so history, resume and idempotent ids hold for every route; in single-node mode it
//! publishes on the in-process bus. Every answer of the API is JSON; every error is
//! `{"error":{"code":C,"message":M}}` with a part A code. [`ROUTES`] lists the API's routes
//! once: the router is built from it, and the OpenAPI document (`openapi.json`, served at
//! `/api/openapi.json`) is tested against it.

pub(crate) mod auth;
mod error;
mod history;
mod nodes;
mod openapi;
mod presence;
mod publish;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on};
use tokio::sync::Semaphore;

pub use error::ApiError;
pub use openapi::OPENAPI;

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
    pub(crate) shared: Arc<Shared<B>>,
    pub(crate) keys: Vec<String>,
}

/// An HTTP method the API serves a route with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`: the route reads its input from the query string.
    Get,
    /// `POST`: the route reads a JSON body.
    Post,
}

impl Method {
    /// The method as the OpenAPI document's `paths` name it (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
        }
    }
}

/// What answers a route: one handler each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/publish`.
    Publish,
    /// `POST /api/batch`.
    Batch,
    /// `POST /api/join`.
    Join,
    /// `POST /api/leave`.
    Leave,
    /// `POST /api/disconnect`.
    Disconnect,
    /// `GET /api/presence`.
    Presence,
    /// `GET /api/presence_stats`.
    PresenceStats,
    /// `GET /api/history`.
    History,
    /// `GET /api/nodes`: the deployment's live edges.
    Nodes,
    /// `GET /api/openapi.json`: the API's OpenAPI document.
    OpenApi,
}

/// One route of the HTTP API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The method it is served with (any other gets 405).
    pub method: Method,
    /// Its path.
    pub path: &'static str,
    /// Its handler.
    pub endpoint: Endpoint,
    /// Whether a request needs one of the API keys. Either way the route answers 404 while the
    /// API is off (no key configured).
    pub keyed: bool,
}

impl Route {
    const fn keyed(method: Method, path: &'static str, endpoint: Endpoint) -> Route {
        Route {
            method,
            path,
            endpoint,
            keyed: true,
        }
    }

    /// Its label in `ferrocast_api_requests_total`: the path without `/api/`.
    pub fn label(&self) -> &'static str {
        self.path.strip_prefix("/api/").unwrap_or(self.path)
    }
}

/// Every route of the HTTP API, the one list the router is built from and the OpenAPI document
/// ([`OPENAPI`], `openapi.json` beside this file) is checked against (here, and end to end in
/// tests/tests/openapi.rs). A new route is a line here, a variant of [`Endpoint`] with its
/// handler in `handler` below, and its path in `openapi.json`: the tests fail until all three
/// agree.
pub const ROUTES: &[Route] = &[
    Route::keyed(Method::Post, "/api/publish", Endpoint::Publish),
    Route::keyed(Method::Post, "/api/batch", Endpoint::Batch),
    Route::keyed(Method::Post, "/api/join", Endpoint::Join),
    Route::keyed(Method::Post, "/api/leave", Endpoint::Leave),
    Route::keyed(Method::Post, "/api/disconnect", Endpoint::Disconnect),
    Route::keyed(Method::Get, "/api/presence", Endpoint::Presence),
    Route::keyed(Method::Get, "/api/presence_stats", Endpoint::PresenceStats),
    Route::keyed(Method::Get, "/api/history", Endpoint::History),
    Route::keyed(Method::Get, "/api/nodes", Endpoint::Nodes),
    // Tools fetch the description before they hold a key; it tells nothing a key protects.
    Route {
        method: Method::Get,
        path: "/api/openapi.json",
        endpoint: Endpoint::OpenApi,
        keyed: false,
    },
];

/// The handler of `route`, served with its method only.
pub(crate) fn handler<B: Bus>(route: &Route) -> MethodRouter<Arc<Api<B>>> {
    let method = route.method.filter();
    match route.endpoint {
        Endpoint::Publish => on(method, publish::publish::<B>),
        Endpoint::Batch => on(method, publish::batch::<B>),
        Endpoint::Join => on(method, publish::join::<B>),
        Endpoint::Leave => on(method, publish::leave::<B>),
        Endpoint::Disconnect => on(method, publish::disconnect::<B>),
        Endpoint::Presence => on(method, presence::list::<B>),
        Endpoint::PresenceStats => on(method, presence::stats::<B>),
        Endpoint::History => on(method, history::page::<B>),
        Endpoint::Nodes => on(method, nodes::list::<B>),
        Endpoint::OpenApi => on(method, openapi::document),
    }
}

/// The routes of the internal listener.
pub fn router<B: Bus>(shared: Arc<Shared<B>>) -> Router {
    let api = Arc::new(Api {
        keys: shared.config.api_keys(),
        shared: shared.clone(),
    });
    let (mut keyed, mut open) = (Router::new(), Router::new());
    for route in ROUTES {
        if route.keyed {
            keyed = keyed.route(route.path, handler::<B>(route));
        } else {
            open = open.route(route.path, handler::<B>(route));
        }
    }
    let routes = keyed
        .route_layer(middleware::from_fn_with_state(
            api.clone(),
            auth::authorize::<B>,
        ))
        .merge(open.route_layer(middleware::from_fn_with_state(
            api.clone(),
            auth::api_on::<B>,
        )))
        .merge(crate::net::console::router(api.clone()))
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
        _ => busy().into_response(),
    }
}

/// No place free: 503 `UNAVAILABLE` with `Retry-After`, as every 503 of the API.
fn busy() -> ApiError {
    ApiError::unavailable("too many requests in progress; retry")
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
        _ => ROUTES
            .iter()
            .find(|route| route.path == path)
            .map_or("other", Route::label),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    #[test]
    fn no_free_place_says_when_to_retry() {
        let response = busy().into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
    }

    #[test]
    fn every_route_has_its_own_label() {
        let mut labels: Vec<_> = ROUTES.iter().map(Route::label).collect();
        labels.extend(["healthz", "readyz", "metrics", "other"]);
        let count = labels.len();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), count, "{labels:?}");
        for route in ROUTES {
            assert_eq!(route_label(route.path), route.label());
        }
    }
}
