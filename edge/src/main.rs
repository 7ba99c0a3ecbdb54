//! `edge`: the Ferrocast WebSocket server. See `edge --help`.

use std::process::ExitCode;

use clap::Parser;
use ferrocast_edge::config::Config;

// jemalloc, not glibc's malloc: connections are set up on one worker thread and torn down on
// another, and glibc then takes the other thread's arena lock for every free. In the churn
// benchmark malloc and free were ~17 % of the edge's CPU; jemalloc cut CPU per cycle by 10-17 %
// and idle memory per connection slightly (BENCHMARKS.md, eighth session).
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
