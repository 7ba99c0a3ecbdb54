//! `edge`: the Ferrocast WebSocket server. See `edge --help`.

use std::process::ExitCode;

use ferrocast_edge::cli::{self, CliError, Task};
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
    let parsed = match cli::parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(CliError::Flags(error)) => error.exit(),
        Err(error @ CliError::File(_)) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match parsed.cli.task {
        None => serve(parsed.cli.config).await,
        Some(Task::CheckConfig(config)) => {
            let matches = parsed
                .matches
                .subcommand_matches("check-config")
                .unwrap_or(&parsed.matches);
            check_config(&config, &cli::check_config::settings(matches, &parsed.file))
        }
        Some(Task::Token(args)) => token(&args),
    }
}

async fn serve(mut config: Config) -> ExitCode {
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

/// Prints the settings, then every problem (to stderr); fails if there is one.
fn check_config(config: &Config, settings: &str) -> ExitCode {
    print!("{settings}");
    let problems = cli::check_config::problems(config);
    if problems.is_empty() {
        eprintln!("configuration OK");
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "{} problem(s) would stop this edge from starting:",
        problems.len()
    );
    for problem in &problems {
        eprintln!("- {problem}");
    }
    ExitCode::FAILURE
}

fn token(args: &cli::token::TokenArgs) -> ExitCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match cli::token::mint(args, now) {
        Ok((token, note)) => {
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
