//! Operations: what the edge tells its operators. Prometheus metrics, logs and traces, and its
//! status in the deployment's directory of edges.

pub mod labels;
pub mod metrics;
pub mod node_status;
pub mod state;
pub mod telemetry;
