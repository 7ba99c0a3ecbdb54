//! The `edge` command line: serving (no subcommand), `edge check-config` and `edge token`, with
//! the settings of a `--config` file under the flags and environment variables.

use std::ffi::OsString;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Config;
use crate::config::file::{self, FileError, Setting};

pub mod check_config;
pub mod token;

/// Ferrocast edge: a WebSocket server that authenticates clients with JWTs, lets them join rooms
/// and delivers what workers publish through Redis. With no flags it runs as a single node with
/// an in-process bus and a development JWT secret: fine for trying it out, not for production.
#[derive(Debug, Parser)]
#[command(name = "edge", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Serving: every flag of the edge.
    #[command(flatten)]
    pub config: Config,
    /// Something other than serving.
    #[command(subcommand)]
    pub task: Option<Task>,
}

/// What `edge` does instead of serving.
#[derive(Debug, Subcommand)]
pub enum Task {
    /// Checks the settings as start-up would (without binding or connecting), prints the
    /// effective ones with their sources and secrets redacted, and exits non-zero listing every
    /// problem. Takes the same flags, environment and --config file as serving.
    CheckConfig(Box<Config>),
    /// Mints a token the configured edge accepts (HS256 with --jwt-secret, from the flag, the
    /// environment or the --config file; the development secret when none is set), and prints
    /// it alone on the last line.
    Token(Box<token::TokenArgs>),
}

/// A parsed command line, and where each setting came from.
#[derive(Debug)]
pub struct Parsed {
    /// What was asked.
    pub cli: Cli,
    /// The keys the config file set (before flags and environment variables).
    pub file: Vec<Setting>,
    /// The matches, for the sources of the settings.
    pub matches: ArgMatches,
}

/// Why the command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config file is unreadable or wrong.
    #[error(transparent)]
    File(#[from] FileError),
    /// The flags are wrong (or `--help` / `--version` was asked for).
    #[error(transparent)]
    Flags(#[from] clap::Error),
}

/// Parses `args` (the program's name first), reading the `--config` file (or `FERROCAST_CONFIG`)
/// first, since its values are the flags' defaults.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, CliError> {
    let mut command = Cli::command();
    let mut settings = Vec::new();
    if let Some(path) = file::path_in(&args) {
        settings = file::read(&path, &Config::command())?;
        command = file::apply(command, &settings);
    }
    let matches = command.try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok(Parsed {
        cli,
        file: settings,
        matches,
    })
}
