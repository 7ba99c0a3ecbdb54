//! `loadtest`: drives many real WebSocket clients against Ferrocast edges and reports latency,
//! loss and what it cost the edge. See `loadtest --help`.

mod baseline;
mod campaign;
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
    // Every client is a file descriptor: take all the hard limit allows (see BENCHMARKS.md for
    // raising it).
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("cannot raise the open file limit: {error}");
    }
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
