//! `GET /api/presence?room=R` and `GET /api/presence_stats?room=R`: the same answers as the
//! client frames, for any room that records presence (no membership needed: the caller holds an
//! API key).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use ferrocast_emitter::presence_json;
use ferrocast_protocol::names;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError};
use crate::bus::Bus;
use crate::presence::query;

#[derive(Debug, Deserialize)]
pub(super) struct RoomQuery {
    room: Option<String>,
}

/// `GET /api/presence?room=R`.
pub(super) async fn list<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    params: Result<Query<RoomQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let room = api.presence_room(params)?;
    let members = query::list(&api.shared.presence, &*api.shared.bus, &room).await?;
    Ok(Json(presence_json(&room, members)))
}

/// `GET /api/presence_stats?room=R`.
pub(super) async fn stats<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    params: Result<Query<RoomQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let room = api.presence_room(params)?;
    let stats = query::stats(&api.shared.presence, &*api.shared.bus, &room).await?;
    Ok(Json(
        json!({"room": room, "clients": stats.clients, "users": stats.users}),
    ))
}

impl<B: Bus> Api<B> {
    /// The queried room, if valid and recording presence.
    fn presence_room(
        &self,
        params: Result<Query<RoomQuery>, QueryRejection>,
    ) -> Result<String, ApiError> {
        let Query(params) = params.map_err(|e| ApiError::bad(e.body_text()))?;
        let room = params.room.ok_or_else(|| ApiError::bad("missing ?room="))?;
        names::validate_room(&room)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ROOM", e.to_string()))?;
        query::tracked(&self.shared.presence, &room)?;
        self.ready()?;
        Ok(room)
    }
}
