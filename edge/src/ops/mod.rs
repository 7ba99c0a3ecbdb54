//! Operations: what the edge tells its operators. Prometheus metrics and logs and traces.

pub mod metrics;
pub mod telemetry;
