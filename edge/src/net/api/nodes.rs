//! `GET /api/nodes`: every live edge of the deployment, as each last reported itself
//! ([`NodeStatus`](crate::ops::node_status::NodeStatus)), ordered by node id.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{Api, ApiError};
use crate::bus::{Bus, NodeDirectory};
use crate::ops::node_status::KEEP_FOR;

/// `GET /api/nodes`.
pub(super) async fn list<B: Bus>(State(api): State<Arc<Api<B>>>) -> Result<Json<Value>, ApiError> {
    let reports = api.shared.bus.nodes().list(KEEP_FOR).await?;
    let mut nodes: Vec<Value> = reports
        .iter()
        // An edge of another version may report what this one cannot read: shown as it is,
        // or left out if it is not even JSON.
        .filter_map(|report| serde_json::from_slice(report).ok())
        .collect();
    nodes.sort_by(|a, b| a["node"].as_str().cmp(&b["node"].as_str()));
    Ok(Json(json!({ "nodes": nodes })))
}
