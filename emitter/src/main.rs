//! `emitter`: publish Ferrocast messages from the command line. See `emitter --help`.

use std::process::ExitCode;

use clap::Parser;
use ferrocast_emitter::cli::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match Cli::parse().run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
