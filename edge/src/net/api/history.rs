//! `GET /api/history?room=R&limit=K&before=O`: a page of a room's history, the same fields as
//! the client's `history` answer (no membership needed: the caller holds an API key).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrocast_protocol::frame::client::{DEFAULT_HISTORY, MAX_HISTORY};
use ferrocast_protocol::{Encoding, Offset, Target, names};
use serde::Deserialize;

use super::{Api, ApiError};
use crate::bus::Bus;

#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    room: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
}

/// `GET /api/history`.
pub(super) async fn page<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    params: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad(e.body_text()))?;
    let room = params.room.ok_or_else(|| ApiError::bad("missing ?room="))?;
    names::validate_room(&room)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ROOM", e.to_string()))?;
    let limit = params.limit.unwrap_or(DEFAULT_HISTORY);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(ApiError::bad(format!("limit must be 1 to {MAX_HISTORY}")));
    }
    let before = params
        .before
        .map(|o| o.parse::<Offset>())
        .transpose()
        .map_err(|_| ApiError::bad("before must be an offset"))?;
    api.ready()?;
    let target = Target::Room(room.clone()).key();
    let page = api
        .shared
        .bus
        .history(&target, before, limit as usize)
        .await?;
    let body = crate::history::answer(&room, None, &page, None, Encoding::Json).map_err(|e| {
        tracing::warn!(%room, error = %e, "cannot encode a history page");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "cannot encode this page",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
