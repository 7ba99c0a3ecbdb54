//! The console: a page on the internal listener, at `/console/`, for the people who run the
//! deployment. It shows the live edges (`GET /api/nodes`), the largest rooms, a room's presence
//! and recent history, and publishes to a room and tails it. It is three static files built into
//! the binary (no build step) calling the API's own handlers, mounted again under
//! `/console/api/`: the browser asks for the API key once (HTTP Basic, the key as password) and
//! sends it with every request under `/console/`, which it would not do for `/api/`.
//!
//! Never on the public listener, and off (404) while the API is (no key configured).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::bus::Bus;
use crate::net::api::auth::{Admission, admitted, api_off};
use crate::net::api::{Api, Endpoint, ROUTES, handler};

/// The API routes the console calls.
const USES: &[Endpoint] = &[
    Endpoint::Nodes,
    Endpoint::Presence,
    Endpoint::History,
    Endpoint::Publish,
];

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// The console's routes, for the internal listener's router.
pub(crate) fn router<B: Bus>(api: Arc<Api<B>>) -> Router<Arc<Api<B>>> {
    let mut routes = Router::new()
        .route("/console/", get(|| async { file(PAGE, "text/html") }))
        .route(
            "/console/console.js",
            get(|| async { file(SCRIPT, "text/javascript") }),
        )
        .route(
            "/console/console.css",
            get(|| async { file(STYLE, "text/css") }),
        );
    for route in ROUTES.iter().filter(|r| USES.contains(&r.endpoint)) {
        routes = routes.route(&format!("/console{}", route.path), handler::<B>(route));
    }
    routes
        .route_layer(middleware::from_fn_with_state(api, authorize::<B>))
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
}

fn file(body: &'static str, kind: &'static str) -> Response {
    let mut response = body.into_response();
    let content_type = HeaderValue::from_static(match kind {
        "text/html" => "text/html; charset=utf-8",
        "text/css" => "text/css; charset=utf-8",
        _ => "text/javascript; charset=utf-8",
    });
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// Lets in requests with an API key; asks the browser for one otherwise. Every answer gets
/// headers that keep the page to itself: its own scripts only, in no other site's frame.
async fn authorize<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let mut response = match admitted(&api, &headers) {
        Admission::Off => return api_off().into_response(),
        Admission::Admitted => next.run(request).await,
        Admission::NoKey => {
            let mut refused = (
                StatusCode::UNAUTHORIZED,
                "The console needs an API key (--api-key): give it as the password.\n",
            )
                .into_response();
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="Ferrocast console", charset="UTF-8""#),
            );
            refused
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
