//! `GET /api/presence?room=R` and `GET /api/presence_stats?room=R`: the same answers as the
//! client frames, for any room that records presence (no membership needed: the caller holds an
//! API key).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use ferrocast_emitter::{PresenceList, presence_json};
use ferrocast_protocol::names;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError};
use crate::bus::Bus;
use crate::presence::flush;

#[derive(Debug, Deserialize)]
pub(super) struct RoomQuery {
    room: Option<String>,
}

/// `GET /api/presence?room=R`.
pub(super) async fn list<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    query: Result<Query<RoomQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let room = api.presence_room(query)?;
    // This edge's own pending joins first, as a `presence` frame does.
    flush::flush(&api.shared.presence, &*api.shared.bus, Some(&room)).await?;
    let max = api.shared.presence.max;
    let list = api.shared.bus.presence_list(&room, max).await?;
    match list {
        PresenceList::Members(members) => Ok(Json(presence_json(&room, members))),
        PresenceList::TooMany(n) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "TOO_LARGE",
            format!("{n} clients present; at most {max} are listed (use presence_stats)"),
        )),
    }
}

/// `GET /api/presence_stats?room=R`.
pub(super) async fn stats<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    query: Result<Query<RoomQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let room = api.presence_room(query)?;
    flush::flush(&api.shared.presence, &*api.shared.bus, Some(&room)).await?;
    let stats = api.shared.bus.presence_stats(&room).await?;
    Ok(Json(
        json!({"room": room, "clients": stats.clients, "users": stats.users}),
    ))
}

impl<B: Bus> Api<B> {
    /// The queried room, if valid and recording presence.
    fn presence_room(
        &self,
        query: Result<Query<RoomQuery>, QueryRejection>,
    ) -> Result<String, ApiError> {
        let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
        let room = query.room.ok_or_else(|| ApiError::bad("missing ?room="))?;
        names::validate_room(&room)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ROOM", e.to_string()))?;
        if !self.shared.presence.tracks(&room) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "presence is not on for this room (--presence-rooms)",
            ));
        }
        self.ready()?;
        Ok(room)
    }
}
