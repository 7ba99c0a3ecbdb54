//! `edge`: the Ferrocast WebSocket server. See `edge --help`.

use std::process::ExitCode;

use clap::Parser;
use ferrocast_edge::config::Config;

// jemalloc, not glibc's malloc: in the churn benchmark glibc's malloc, free and realloc were
// ~12.5 % of the edge's samples and its internal lock waits another ~4.7 % (most likely arena
// locks: a connection is set up on one worker thread and torn down on another). jemalloc cut
// the edge's CPU per cycle by 10-17 % and idle memory per connection slightly (BENCHMARKS.md,
// eighth session).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
