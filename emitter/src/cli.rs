//! The `emitter` command line: publish from cron jobs, scripts and shells.
//!
//! Its exit status tells a script what to do next (see [`Outcome`]): 0 all done, 2 fix the
//! input, 3 try again later, 1 anything else.

mod stdin;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::settings::{node_urls, parse_duration};

use anyhow::Context;
use clap::{ArgGroup, Args, Parser, Subcommand};
use ferrocast_protocol::keys::Target;
use ferrocast_protocol::{Scope, script};
use serde_json::value::RawValue;

use crate::{EmitError, Emitter, Inbox, InboxError, Message, Received, StartFrom};
use ferrocast_protocol::Envelope;
use ferrocast_protocol::envelope::EnvelopeError;
use ferrocast_protocol::names::NameError;

/// The exit statuses, for `--help`: kept in step with [`Outcome`].
const EXIT_STATUS: &str = "\
Exit status:
  0  everything was published (or done)
  1  something else failed (e.g. Redis refused a publish, standard output closed)
  2  bad input: an invalid argument (usage errors included) or --stdin line; with --stdin, every
     valid line was still published
  3  Redis unavailable: something was not published (with --stdin, stderr names the lines); try
     again later";

/// How a run ended, as the process's exit status. A run with several problems ends with the
/// most pressing: `Unavailable`, then `Failed`, then `BadInput`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything was published (or done): 0.
    Done,
    /// Some input (an argument, a `--stdin` line) was invalid; everything valid was published: 2.
    BadInput,
    /// Something else failed, e.g. Redis refused a publish or standard output closed: 1.
    Failed,
    /// Redis could not be reached, so something was not published; trying again later may
    /// work: 3.
    Unavailable,
}

impl Outcome {
    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Failed => 1,
            Outcome::BadInput => 2,
            Outcome::Unavailable => 3,
        }
    }

    /// How a run that failed with `error` ended, from the typed errors in its chain.
    pub fn of_error(error: &anyhow::Error) -> Outcome {
        for cause in error.chain() {
            if let Some(e) = cause.downcast_ref::<EmitError>() {
                return Outcome::of_emit(e);
            }
            if let Some(e) = cause.downcast_ref::<InboxError>() {
                return match e {
                    InboxError::InvalidUrl(_) | InboxError::InvalidSetting(_) => Outcome::BadInput,
                    e if e.is_transient() => Outcome::Unavailable,
                    _ => Outcome::Failed,
                };
            }
            if cause.is::<NameError>() || cause.is::<EnvelopeError>() || cause.is::<BadArgument>() {
                return Outcome::BadInput;
            }
        }
        Outcome::Failed
    }

    /// How a message that failed with `error` counts.
    pub fn of_emit(error: &EmitError) -> Outcome {
        match error {
            EmitError::Unavailable(_) => Outcome::Unavailable,
            EmitError::Redis(_) | EmitError::Reply(_) => Outcome::Failed,
            EmitError::InvalidName(_)
            | EmitError::InvalidJson(_)
            | EmitError::UnsupportedData(_)
            | EmitError::InvalidUrl(_)
            | EmitError::Envelope(_) => Outcome::BadInput,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(outcome.code())
    }
}

/// An argument that clap accepted but the command cannot use (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadArgument(String);

/// Publish Ferrocast messages through Redis to a room, a user, a client or everyone; move or
/// disconnect sessions; read what clients send upstream.
#[derive(Debug, Parser)]
#[command(name = "emitter", version, after_help = EXIT_STATUS)]
pub struct Cli {
    /// Redis to publish through.
    #[arg(
        long,
        env = "FERROCAST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub redis_url: String,
    /// A Redis Cluster to use instead of --redis-url: some of its nodes, comma-separated
    /// (host:port,host:port,...); the others are discovered.
    #[arg(
        long,
        env = "FERROCAST_REDIS_CLUSTER_NODES",
        hide_env_values = true,
        value_delimiter = ',',
        global = true
    )]
    pub redis_cluster_nodes: Vec<String>,
    /// Key prefix shared with the edges.
    #[arg(long, env = "FERROCAST_PREFIX", default_value = "fc", global = true)]
    pub prefix: String,
    /// Messages kept per target for resuming clients (approximate cap).
    #[arg(long, env = "FERROCAST_HISTORY_LEN", default_value_t = script::DEFAULT_HISTORY_LEN, global = true)]
    pub history_len: u64,
    /// How long a target's history lives after its last publish (e.g. 600s, 10m, 1h).
    #[arg(long, env = "FERROCAST_HISTORY_TTL", default_value = "10m", value_parser = parse_duration, global = true)]
    pub history_ttl: Duration,
    /// Give up on Redis after this long (connecting, or waiting for an answer).
    #[arg(long, env = "FERROCAST_REDIS_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub redis_timeout: Duration,
    /// How often to retry a publish that found Redis unreachable (waiting 100 ms, then twice as
    /// long each time). A publish fails after retries + 1 attempts.
    #[arg(
        long,
        env = "FERROCAST_REDIS_RETRIES",
        default_value_t = 2,
        global = true
    )]
    pub retries: u32,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish one message (prints its offset), or one per line of standard input (--stdin).
    Send(SendArgs),
    /// Make a user's or a client's sessions join a room (they get `joined` with "by":"server").
    Join(MoveArgs),
    /// Make a user's or a client's sessions leave a room (they get `left` with "by":"server").
    Leave(MoveArgs),
    /// Close the sessions of a user, a client, a room's members or everyone (close code 4010).
    Disconnect(DisconnectArgs),
    /// Read what clients `send` upstream, as JSON lines on standard output, acknowledging each
    /// once printed. Runs until interrupted, or until --count messages.
    Consume(ConsumeArgs),
}

/// `emitter join` and `emitter leave`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["user", "client"])))]
pub struct MoveArgs {
    /// Every session of this user (a token's `sub`).
    #[arg(long)]
    pub user: Option<String>,
    /// One connection, by the client id from its welcome frame.
    #[arg(long)]
    pub client: Option<String>,
    /// The room.
    #[arg(long)]
    pub room: String,
}

/// `emitter disconnect`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["user", "client", "room", "all"])))]
pub struct DisconnectArgs {
    /// Every session of this user (a token's `sub`).
    #[arg(long)]
    pub user: Option<String>,
    /// One connection, by the client id from its welcome frame.
    #[arg(long)]
    pub client: Option<String>,
    /// Every member of this room.
    #[arg(long)]
    pub room: Option<String>,
    /// Every connection.
    #[arg(long)]
    pub all: bool,
    /// Close reason the clients see (at most 123 bytes).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Close code, 4010-4999 (4000-4009 have meanings of their own in the protocol).
    #[arg(long, default_value_t = ferrocast_protocol::close::DISCONNECTED)]
    pub code: u16,
}

/// `emitter consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Consumer group: consumers of one group share the messages; each group gets them all.
    #[arg(long)]
    pub group: String,
    /// This consumer's name within the group (e.g. the host name).
    #[arg(long)]
    pub consumer: String,
    /// Exit after printing this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// A message left unacknowledged by a consumer for this long is claimed by another.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub claim_idle: Duration,
    /// Deliveries before a message moves to the dead-letter stream P:{inbox}:dead.
    #[arg(long, default_value_t = 5)]
    pub max_deliveries: u64,
    /// A new group starts with messages sent from now on, not everything in the inbox.
    #[arg(long)]
    pub new_only: bool,
    /// Partitions the inbox is split into: the edges' --inbox-partitions.
    #[arg(long, env = "FERROCAST_INBOX_PARTITIONS", default_value_t = 1)]
    pub inbox_partitions: u16,
}

/// `emitter send`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_STATUS)]
#[command(group(ArgGroup::new("target").required(true).args(["room", "user", "client", "all", "stdin"])))]
#[command(group(ArgGroup::new("payload").args(["data", "data_file"])))]
pub struct SendArgs {
    /// Send to every member of this room.
    #[arg(long)]
    pub room: Option<String>,
    /// Send to every session of this user (a token's `sub`).
    #[arg(long)]
    pub user: Option<String>,
    /// Send to one connection, by the client id from its welcome frame.
    #[arg(long)]
    pub client: Option<String>,
    /// Send to every connection.
    #[arg(long)]
    pub all: bool,
    /// Event name (1-64 bytes of A-Z a-z 0-9 . _ : @ / -).
    #[arg(long, required_unless_present = "stdin", conflicts_with = "stdin")]
    pub event: Option<String>,
    /// The message, as JSON text.
    #[arg(long, conflicts_with = "stdin")]
    pub data: Option<String>,
    /// Read the message's JSON from this file.
    #[arg(long, conflicts_with = "stdin")]
    pub data_file: Option<PathBuf>,
    /// Leave out this client id (repeatable; in --stdin mode applies to every line).
    #[arg(long = "except", value_name = "CLIENT")]
    pub except: Vec<String>,
    /// Read one JSON object per line, e.g. {"room":"chat:1","event":"say","data":{...}}
    /// (targets: "room", "user", "client" or "all":true; optional "except":[..]), and publish
    /// each as it arrives (so `tail -f events | emitter send --stdin` works), printing its offset.
    /// Bad lines are reported on stderr with their number and reason, and the rest are still
    /// published; if Redis becomes unavailable, reading stops and stderr names the lines not
    /// published. A summary line on stderr ends every run.
    #[arg(long)]
    pub stdin: bool,
}

impl Cli {
    /// Runs the command. Errors that concern the whole run come back as `Err`
    /// ([`Outcome::of_error`] gives their exit status); per-line failures in `--stdin` mode are
    /// reported as they happen and set the status returned.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match &self.command {
            Command::Send(args) if args.stdin => self.send_stdin(args).await,
            Command::Send(args) => self.send_one(args).await,
            Command::Join(args) | Command::Leave(args) => self.move_sessions(args).await,
            Command::Disconnect(args) => self.disconnect(args).await,
            Command::Consume(args) => self.consume(args).await,
        }
    }

    async fn move_sessions(&self, args: &MoveArgs) -> anyhow::Result<ExitCode> {
        let target = match (&args.user, &args.client) {
            (Some(user), _) => Target::new(Scope::User, user),
            (_, Some(client)) => Target::new(Scope::Client, client),
            _ => return Err(BadArgument("give --user or --client".into()).into()),
        }?;
        let envelope = match self.command {
            Command::Join(_) => Envelope::join(&target, &args.room),
            _ => Envelope::leave(&target, &args.room),
        };
        self.publish_control(&envelope).await
    }

    async fn disconnect(&self, args: &DisconnectArgs) -> anyhow::Result<ExitCode> {
        let target = match (&args.user, &args.client, &args.room) {
            (Some(user), _, _) => Target::new(Scope::User, user),
            (_, Some(client), _) => Target::new(Scope::Client, client),
            (_, _, Some(room)) => Target::new(Scope::Room, room),
            _ => Ok(Target::All),
        }?;
        self.publish_control(&Envelope::disconnect(&target, args.code, &args.reason))
            .await
    }

    /// Checks a control envelope before connecting, publishes it and prints its offset.
    async fn publish_control(&self, envelope: &Envelope) -> anyhow::Result<ExitCode> {
        self.publish_one(&Message::from_envelope(envelope)?).await
    }

    async fn consume(&self, args: &ConsumeArgs) -> anyhow::Result<ExitCode> {
        let start = if args.new_only {
            StartFrom::New
        } else {
            StartFrom::Beginning
        };
        let mut builder = Inbox::builder(&self.redis_url, &args.group, &args.consumer);
        if !self.redis_cluster_nodes.is_empty() {
            builder = builder.cluster(node_urls(&self.redis_cluster_nodes));
        }
        let mut inbox = builder
            .prefix(&self.prefix)
            .partitions(args.inbox_partitions)
            .claim_idle(args.claim_idle)
            .max_deliveries(args.max_deliveries)
            .start_from(start)
            .timeout(self.redis_timeout)
            .connect()
            .await
            .with_context(|| format!("cannot read the inbox in {}", self.redis_name()))?;
        let mut printed = 0u64;
        let limit = args.count.unwrap_or(u64::MAX);
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        while printed < limit {
            // Never more than still wanted: whatever is read is this consumer's to acknowledge.
            let wanted = usize::try_from(limit - printed).unwrap_or(usize::MAX);
            let batch = tokio::select! {
                batch = inbox.next_up_to(wanted) => batch?,
                () = &mut shutdown => break,
            };
            for received in batch {
                let line = json_line(&received)?;
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{line}")?;
                // Acknowledged only once the line is out: a consumer killed in between
                // leaves the message for another.
                stdout.flush()?;
                drop(stdout);
                inbox.ack(&received).await?;
                printed += 1;
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Where Redis is, for messages.
    fn redis_name(&self) -> String {
        if self.redis_cluster_nodes.is_empty() {
            redact(&self.redis_url)
        } else {
            let nodes: Vec<String> = self.redis_cluster_nodes.iter().map(|n| redact(n)).collect();
            format!("the cluster at {}", nodes.join(","))
        }
    }

    async fn connect(&self) -> anyhow::Result<Emitter> {
        let builder = if self.redis_cluster_nodes.is_empty() {
            Emitter::builder(&self.redis_url)
        } else {
            Emitter::cluster_builder(node_urls(&self.redis_cluster_nodes))
        };
        builder
            .prefix(&self.prefix)
            .history_len(self.history_len)
            .history_ttl(self.history_ttl)
            .connect_timeout(self.redis_timeout)
            .response_timeout(self.redis_timeout)
            .retries(self.retries, Duration::from_millis(100))
            .connect()
            .await
            .with_context(|| format!("cannot publish through {}", self.redis_name()))
    }

    async fn send_one(&self, args: &SendArgs) -> anyhow::Result<ExitCode> {
        let target = match (&args.room, &args.user, &args.client) {
            (Some(room), _, _) => Target::new(Scope::Room, room),
            (_, Some(user), _) => Target::new(Scope::User, user),
            (_, _, Some(client)) => Target::new(Scope::Client, client),
            _ => Ok(Target::All),
        }?;
        let json = match (&args.data, &args.data_file) {
            (Some(data), _) => data.clone().into_bytes(),
            (_, Some(path)) => std::fs::read(path)
                .map_err(|e| BadArgument(format!("cannot read {}: {e}", path.display())))?,
            _ => {
                let missing = "give the message with --data JSON or --data-file FILE";
                return Err(BadArgument(missing.into()).into());
            }
        };
        let event = args.event.as_deref().unwrap_or_default();
        let message = Message::new(target, event, json, args.except.clone(), None)?;
        self.publish_one(&message).await
    }

    /// Publishes a checked message and prints its offset.
    async fn publish_one(&self, message: &Message) -> anyhow::Result<ExitCode> {
        let emitter = self.connect().await?;
        let offset = emitter
            .emit_batch(std::slice::from_ref(message))
            .await?
            .pop()
            .context("no reply from Redis")??;
        println!("{offset}");
        Ok(ExitCode::SUCCESS)
    }

    async fn send_stdin(&self, args: &SendArgs) -> anyhow::Result<ExitCode> {
        // Connected before the first line is read: a Redis that is down from the start fails
        // the run with nothing read, which a script can simply run again.
        let emitter = self.connect().await?;
        let input = tokio::io::BufReader::with_capacity(stdin::BUFFER, tokio::io::stdin());
        Ok(stdin::send(&emitter, input, &args.except).await.into())
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// An upstream message as one JSON line: its fields, with `data` and `meta` as the JSON the
/// client and its token carried.
fn json_line(received: &Received) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct LineOut<'a> {
        entry: &'a str,
        deliveries: u64,
        id: String,
        client: &'a str,
        user: &'a str,
        node: &'a str,
        event: &'a str,
        data: &'a RawValue,
        meta: Option<&'a RawValue>,
        ts: u64,
        trace: Option<&'a str>,
    }
    let m = &received.message;
    fn raw(bytes: &[u8]) -> anyhow::Result<&RawValue> {
        // Decoding checked it is JSON text already.
        Ok(serde_json::from_slice(bytes)?)
    }
    Ok(serde_json::to_string(&LineOut {
        entry: &received.entry,
        deliveries: received.deliveries,
        id: m.id.hyphenated().to_string(),
        client: &m.client,
        user: &m.user,
        node: &m.node,
        event: &m.event,
        data: raw(&m.data)?,
        meta: m.meta.as_deref().map(raw).transpose()?,
        ts: m.ts,
        trace: m.trace.as_deref(),
    })?)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
