//! A back end's hooks in one file (docs/protocol.md, part 4): it authenticates opaque session
//! tokens and decides who may join which project room, from two tables that stand in for the
//! application's database.
//!
//! ```text
//! cargo run -p ferrocast-emitter --example hook_server          # listens on 127.0.0.1:3000
//! edge --redis-url redis://127.0.0.1:6379 --connect-hook http://127.0.0.1:3000/connect \
//!      --join-hook http://127.0.0.1:3000/join --join-hook-rooms 'project:*' \
//!      --hook-key change-me-to-a-secret --upstream-events 'chat.*' --upstream-lifecycle join
//! # a browser connects with {"type":"auth","token":"session-alice"}, joins chat:lobby (its
//! # token's rooms) and project:apollo (this server's table says yes), not project:zeus.
//! ```
//!
//! FERROCAST_HOOK_LISTEN changes the address; FERROCAST_HOOK_KEY (the edges' --hook-key) makes it
//! refuse requests that do not carry it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

/// The application's data: sessions and project members.
struct App {
    /// Session token → user.
    sessions: HashMap<&'static str, &'static str>,
    /// Project room → its members.
    projects: HashMap<&'static str, Vec<&'static str>>,
    /// The edges' --hook-key, if set.
    key: Option<String>,
}

#[derive(Deserialize)]
struct ConnectRequest {
    token: String,
}

#[derive(Deserialize)]
struct JoinRequest {
    user: String,
    room: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = Arc::new(App {
        sessions: HashMap::from([("session-alice", "alice"), ("session-bob", "bob")]),
        projects: HashMap::from([
            ("project:apollo", vec!["alice"]),
            ("project:zeus", vec!["bob"]),
        ]),
        key: std::env::var("FERROCAST_HOOK_KEY").ok(),
    });
    let router = axum::Router::new()
        .route("/connect", post(connect))
        .route("/join", post(join))
        .with_state(app);
    let address =
        std::env::var("FERROCAST_HOOK_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    eprintln!("hook server on http://{address} (/connect, /join)");
    axum::serve(listener, router).await?;
    Ok(())
}

/// Whether the request comes from an edge: it carries the hook key, when one is configured.
fn from_edge(app: &App, headers: &HeaderMap) -> bool {
    let Some(key) = &app.key else {
        return true;
    };
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.strip_prefix("Bearer ") == Some(key.as_str()))
}

/// A session token's user and rights, as a JWT's claims would say them; 401 for an unknown one.
async fn connect(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(request): Json<ConnectRequest>,
) -> Response {
    if !from_edge(&app, &headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    match app.sessions.get(request.token.as_str()) {
        Some(user) => Json(json!({
            "user": user,
            "rooms": ["chat:*"],
            "info": {"name": user},
            // Sessions last an hour; the client refreshes before then.
            "exp": ferrocast_protocol::envelope::now_ms() / 1000 + 3600,
        }))
        .into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// Whether the user is a member of the project room.
async fn join(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(request): Json<JoinRequest>,
) -> Response {
    if !from_edge(&app, &headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let member = app
        .projects
        .get(request.room.as_str())
        .is_some_and(|members| members.contains(&request.user.as_str()));
    if member {
        Json(json!({"allow": true})).into_response()
    } else {
        Json(json!({"allow": false, "reason": "you are not a member of this project"}))
            .into_response()
    }
}
