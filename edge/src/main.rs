//! `edge`: the Ferrocast WebSocket server. See `edge --help`.

use std::process::ExitCode;

use clap::Parser;
use ferrocast_edge::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let mut config = Config::parse();
    // The node id names the edge in traces too, so it is settled before anything logs.
    let node = config
        .node_id
        .get_or_insert_with(ferrocast_edge::random_node_id)
        .clone();
    let _telemetry = ferrocast_edge::ops::telemetry::init(
        config.log_format,
        &config.log,
        config.otlp_endpoint.as_deref(),
        &node,
    );
    match ferrocast_edge::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
