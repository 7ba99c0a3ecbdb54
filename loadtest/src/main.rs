//! `loadtest`: drives many real WebSocket clients against Ferrocast edges and reports latency,
//! loss and what it cost the edge. See `loadtest --help`.

mod baseline;
mod cli;
mod clients;
mod proc;
mod report;
mod scenarios;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match scenarios::run(&cli).await {
        Ok(report) => {
            report.print(cli.common.json);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
