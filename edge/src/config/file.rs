//! `--config FILE`: the edge's flags in a TOML file, one top-level key per flag, named as the
//! flag is without its dashes (`max-connections = 5000`; `max_connections` reads the same).
//!
//! A file's values become the flags' defaults, which is what gives the documented precedence
//! for free: a flag on the command line beats its environment variable, which beats the file,
//! which beats the built-in default. Every value is checked by its flag's own parser before
//! anything starts, so a mistake is reported with its key and line, and every mistake at once.

use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};
use thiserror::Error;
use toml_edit::{Document, Item, Value};

/// The environment variable naming the file when `--config` is not given.
pub const ENV: &str = "FERROCAST_CONFIG";

/// One key of the file: the flag it sets, and the value(s) it gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The flag's long name (`max-connections`).
    pub flag: String,
    /// Its values as they would be written after the flag (several for a list).
    pub values: Vec<String>,
    /// Line of the key in the file, from 1.
    pub line: usize,
}

/// Why a file cannot be used.
#[derive(Debug, Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and column.
        message: String,
    },
    /// Keys that are wrong, each with its line.
    #[error("the config file {path} has {} problem(s):\n{}", .problems.len(), .problems.join("\n"))]
    Keys {
        /// The file.
        path: PathBuf,
        /// One line per problem: `line N: ...`.
        problems: Vec<String>,
    },
}

/// The config file named by `--config FILE` (or `--config=FILE`) in `args`, else by
/// [`ENV`]. Read before the flags are parsed, because the file supplies their defaults.
pub fn path_in(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Reads `path` and checks each key against `command`'s flags and each value with its flag's
/// parser.
pub fn read(path: &Path, command: &Command) -> Result<Vec<Setting>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, command).map_err(|error| match error {
        Parsed::Syntax(message) => FileError::Syntax {
            path: path.to_owned(),
            message,
        },
        Parsed::Keys(problems) => FileError::Keys {
            path: path.to_owned(),
            problems,
        },
    })
}

/// What [`parse`] found wrong.
#[derive(Debug)]
enum Parsed {
    Syntax(String),
    Keys(Vec<String>),
}

fn parse(text: &str, command: &Command) -> Result<Vec<Setting>, Parsed> {
    let document = Document::parse(text).map_err(|e| Parsed::Syntax(e.to_string()))?;
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map_or(0, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        })
    };
    let mut settings = Vec::new();
    let mut problems = Vec::new();
    for (key, item) in document.as_table().iter() {
        let line = line_of(document.as_table().key(key).and_then(toml_edit::Key::span));
        match setting(key, item, line, command) {
            Ok(setting) => settings.push(setting),
            Err(problem) => problems.push(format!("line {line}: {problem}")),
        }
    }
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(Parsed::Keys(problems))
    }
}

/// Flags a file cannot set: the file itself, and the subcommand-free informational ones.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];

fn setting(key: &str, item: &Item, line: usize, command: &Command) -> Result<Setting, String> {
    let flag = key.replace('_', "-");
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(flag.as_str()) && !NOT_IN_FILE.contains(&flag.as_str()))
        .ok_or_else(|| {
            format!("unknown key `{key}` (keys are the edge's flags, see edge --help)")
        })?;
    let values = match item {
        Item::Value(Value::Array(array)) => {
            let lists = arg.get_value_delimiter().is_some()
                || matches!(arg.get_action(), ArgAction::Append);
            if !lists {
                return Err(format!("`{key}` takes one value, not a list"));
            }
            array.iter().map(scalar).collect::<Result<Vec<_>, _>>()
        }
        Item::Value(value) => scalar(value).map(|v| vec![v]),
        _ => Err("tables are not read: write every key at the top level".to_owned()),
    }
    .map_err(|problem| format!("`{key}`: {problem}"))?;
    check_values(arg, &flag, &values).map_err(|e| format!("`{key}`: {}", first_line(&e)))?;
    Ok(Setting { flag, values, line })
}

/// Runs `values` through the flag's own parser, as if each were given on the command line
/// (a switch through a boolean parser, since it takes no value there).
fn check_values(arg: &Arg, flag: &str, values: &[String]) -> Result<(), String> {
    let switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
    // A new flag with the parser only: the original's relations to other flags (conflicts,
    // requirements) name flags this one-flag command does not have.
    let parser = if switch {
        clap::value_parser!(bool)
    } else {
        arg.get_value_parser().clone()
    };
    let probe = Arg::new("value")
        .long(flag.to_owned())
        .action(ArgAction::Set)
        .value_parser(parser);
    let mut command = Command::new("edge").no_binary_name(true).arg(probe);
    for value in values {
        command
            .try_get_matches_from_mut([format!("--{flag}={value}")])
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn scalar(value: &Value) -> Result<String, String> {
    Ok(match value {
        Value::String(s) => s.value().clone(),
        Value::Integer(i) => i.value().to_string(),
        Value::Float(f) => f.value().to_string(),
        Value::Boolean(b) => b.value().to_string(),
        Value::Datetime(d) => d.value().to_string(),
        Value::Array(_) | Value::InlineTable(_) => {
            return Err("a value must be a string, number or boolean".to_owned());
        }
    })
}

fn first_line(message: &str) -> &str {
    let message = message.trim_start_matches("error: ");
    message.lines().next().unwrap_or(message)
}

/// `command` (and each of its subcommands) with the file's values as the defaults of the flags
/// they name.
pub fn apply(command: Command, settings: &[Setting]) -> Command {
    let mut command = with_defaults(command, settings);
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| with_defaults(sub, settings));
    }
    command
}

fn with_defaults(mut command: Command, settings: &[Setting]) -> Command {
    for setting in settings {
        let id = command
            .get_arguments()
            .find(|a| a.get_long() == Some(setting.flag.as_str()))
            .map(|a| a.get_id().clone());
        if let Some(id) = id {
            let values = setting.values.clone();
            command = command.mut_arg(id, |arg| arg.default_values(values));
        }
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::{CommandFactory, FromArgMatches};

    fn config_with(file: &str, args: &[&str]) -> Result<Config, String> {
        let command = Config::command();
        let settings = parse(file, &command).map_err(|e| format!("{e:?}"))?;
        let matches = apply(command, &settings)
            .try_get_matches_from(std::iter::once("edge").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_arg_matches(&matches).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_sets_defaults_that_flags_override() {
        let file = "max-connections = 5000\nrate = 2.5\npublic_rooms = [\"lobby\", \"news:*\"]\n\
                    echo = true\nheartbeat = \"10s\"\njwt-alg = \"ES256\"\n";
        let config = config_with(file, &[]).unwrap();
        assert_eq!(config.max_connections, 5000);
        assert_eq!(config.rate, 2.5);
        assert_eq!(config.public_rooms, ["lobby", "news:*"]);
        assert!(config.echo);
        assert_eq!(config.heartbeat, std::time::Duration::from_secs(10));
        let config = config_with(file, &["--max-connections", "7"]).unwrap();
        assert_eq!(config.max_connections, 7);
        assert_eq!(config.rate, 2.5);
    }

    #[test]
    fn every_mistake_is_named_with_its_line() {
        let file = "rate = 1\nnot-a-flag = 3\nmax-connections = \"many\"\n\
                    listen = [\"a\", \"b\"]\nconfig = \"other.toml\"\n[redis]\nurl = \"x\"\n";
        let Err(Parsed::Keys(problems)) = parse(file, &Config::command()) else {
            panic!("accepted");
        };
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(
            problems[0].starts_with("line 2: unknown key `not-a-flag`"),
            "{problems:#?}"
        );
        assert!(
            problems[1].starts_with("line 3: `max-connections`: invalid value"),
            "{problems:#?}"
        );
        assert!(
            problems[2].starts_with("line 4: `listen` takes one value"),
            "{problems:#?}"
        );
        assert!(
            problems[3].starts_with("line 5: unknown key `config`"),
            "{problems:#?}"
        );
        assert!(problems[4].contains("unknown key `redis`"), "{problems:#?}");
        let Err(Parsed::Syntax(message)) = parse("rate = = 1", &Config::command()) else {
            panic!("accepted");
        };
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn the_path_comes_from_the_flag_first() {
        let args = |v: &[&str]| {
            v.iter()
                .map(Into::into)
                .collect::<Vec<std::ffi::OsString>>()
        };
        assert_eq!(
            path_in(&args(&["edge", "--rate", "2", "--config", "a.toml"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            path_in(&args(&["edge", "check-config", "--config=b.toml"])),
            Some(PathBuf::from("b.toml"))
        );
    }
}
