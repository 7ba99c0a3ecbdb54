//! `edge`: the Ferrocast WebSocket server. See `edge --help`.

use std::process::ExitCode;

use clap::Parser;
use ferrocast_edge::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    ferrocast_edge::telemetry::init(config.log_format, &config.log);
    match ferrocast_edge::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
