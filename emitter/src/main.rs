//! `emitter`: publish Ferrocast messages from the command line. See `emitter --help`.

// The commands' futures nest the emitter's, the pool's and rustls's types deep enough that a
// fresh build's layout queries pass the default limit of 128.
#![recursion_limit = "256"]

use std::process::ExitCode;

use clap::Parser;
use ferrocast_emitter::cli::{Cli, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(cli.run()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            Outcome::of_error(&e).into()
        }
    };
    // Standard input is read on a blocking thread that cannot be interrupted: a `--stdin` run
    // that stopped early (Redis unavailable) would otherwise wait for a line that may never
    // come before exiting.
    runtime.shutdown_background();
    code
}
