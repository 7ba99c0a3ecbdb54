//! `edge check-config`: everything start-up would refuse, found without binding a port or
//! connecting to Redis, and the settings the edge would run with, each with where it came from.

use std::fmt::Write as _;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use crate::config::Config;
use crate::config::file::Setting;

/// Flags that hold secrets but whose value names a place: shown, with any password masked.
const ADDRESSES: &[&str] = &["redis-url", "redis-cluster-nodes", "redis-sentinels"];

/// Every problem start-up would refuse `config` for, each on its own.
pub fn problems(config: &Config) -> Vec<String> {
    let (public, internal) = config.bind_addresses();
    let (_, mut problems) = crate::preflight::problems(config, [public, internal]);
    match crate::bus::redis::RedisSettings::from_config(config) {
        Ok(settings) => {
            if let Err(error) = config
                .redis
                .sentinel
                .sentinels(config.redis.url.as_deref(), &settings.tls)
            {
                problems.push(error.to_string());
            }
        }
        Err(error) => problems.push(error.to_string()),
    }
    if let Some(url) = &config.redis.url
        && config.redis.sentinel.sentinels.is_empty()
        && let Err(error) = redis::parse_redis_url(url).ok_or("not a Redis URL")
    {
        problems.push(format!("--redis-url: {error}"));
    }
    problems
}

/// The effective settings as a config file would write them, one per line, each followed by
/// its source; secrets redacted.
pub fn settings(matches: &ArgMatches, file: &[Setting]) -> String {
    let command = Config::command();
    let mut out = String::from(
        "# The effective settings. A flag beats its environment variable, which beats the\n\
         # config file, which beats the default.\n",
    );
    for arg in command.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if matches!(long, "help" | "version") {
            continue;
        }
        let Some(raw) = matches.get_raw(id) else {
            let _ = writeln!(out, "# {long}: not set");
            continue;
        };
        let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        let values: Vec<String> = if arg.is_hide_env_values_set() {
            values.iter().map(|v| redact(long, v)).collect()
        } else {
            values
        };
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag".to_owned(),
            Some(ValueSource::EnvVariable) => format!(
                "environment {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy())
                    .unwrap_or_default()
            ),
            _ => match file.iter().find(|s| s.flag == long) {
                Some(setting) => format!("config file, line {}", setting.line),
                None => "default".to_owned(),
            },
        };
        let value = if values.len() == 1 && arg.get_value_delimiter().is_none() {
            quoted(&values[0])
        } else {
            let items: Vec<String> = values.iter().map(|v| quoted(v)).collect();
            format!("[{}]", items.join(", "))
        };
        let _ = writeln!(out, "{long} = {value}  # {source}");
    }
    out
}

/// A TOML string (a JSON string is one).
fn quoted(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// `value` of the secret flag `long`, safe to print: an address with its password masked, any
/// other secret replaced.
fn redact(long: &str, value: &str) -> String {
    if ADDRESSES.contains(&long) {
        match value.rsplit_once('@') {
            Some((credentials, host)) => {
                let scheme = credentials.split_once("://").map_or("", |(s, _)| s);
                let scheme = if scheme.is_empty() {
                    String::new()
                } else {
                    format!("{scheme}://")
                };
                format!("{scheme}<redacted>@{host}")
            }
            None => value.to_owned(),
        }
    } else {
        "<redacted>".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        assert_eq!(
            redact("redis-url", "rediss://app:hunter2@redis:6380/0"),
            "rediss://<redacted>@redis:6380/0"
        );
        assert_eq!(
            redact("redis-url", "redis://redis:6379"),
            "redis://redis:6379"
        );
        assert_eq!(redact("jwt-secret", "abc"), "<redacted>");
        let matches = Config::command()
            .try_get_matches_from([
                "edge",
                "--jwt-secret",
                "a-secret-that-must-not-be-printed-anywhere",
                "--redis-url",
                "redis://:pw-also-secret@r:6379",
                "--public-rooms",
                "lobby,news:*",
            ])
            .unwrap();
        let out = settings(&matches, &[]);
        assert!(
            !out.contains("must-not-be-printed") && !out.contains("pw-also"),
            "{out}"
        );
        assert!(out.contains("jwt-secret = \"<redacted>\"  # flag"), "{out}");
        assert!(
            out.contains("public-rooms = [\"lobby\", \"news:*\"]  # flag"),
            "{out}"
        );
        assert!(
            out.contains("max-connections = \"100000\"  # default"),
            "{out}"
        );
        assert!(out.contains("# node-id: not set"), "{out}");
    }
}
