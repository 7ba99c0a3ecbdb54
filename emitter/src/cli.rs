//! The `emitter` command line: publish from cron jobs, scripts and shells.
//!
//! Its exit status tells a script what to do next (see [`Outcome`]): 0 all done, 2 fix the
//! input, 3 try again later, 1 anything else.

mod args;
mod edge;
mod outcome;
mod over_edge;
mod stdin;

pub use args::{Cli, Command, ConsumeArgs, DisconnectArgs, MoveArgs, PresenceArgs, SendArgs};
pub use edge::EdgeError;
use outcome::BadArgument;
pub use outcome::Outcome;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use ferrocast_redis::settings::node_urls;

use anyhow::Context;
use ferrocast_protocol::Scope;
use ferrocast_protocol::keys::Target;
use serde_json::value::RawValue;

use crate::{Emitter, Inbox, Message, Received, StartFrom};
use ferrocast_protocol::Envelope;

impl Cli {
    /// Runs the command. Errors that concern the whole run come back as `Err`
    /// ([`Outcome::of_error`] gives their exit status); per-line failures in `--stdin` mode are
    /// reported as they happen and set the status returned.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        // Each command's future boxed: run once, and nested inline they make a type too deep
        // for the compiler's layout queries.
        if let Some(url) = &self.edge {
            return Box::pin(self.over_edge(url)).await;
        }
        match &self.command {
            Command::Presence(args) => Box::pin(self.presence(args)).await,
            Command::Send(args) if args.stdin => Box::pin(self.send_stdin(args)).await,
            Command::Send(args) => Box::pin(self.send_one(args)).await,
            Command::Join(args) | Command::Leave(args) => Box::pin(self.move_sessions(args)).await,
            Command::Disconnect(args) => Box::pin(self.disconnect(args)).await,
            Command::Consume(args) => Box::pin(self.consume(args)).await,
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

    async fn presence(&self, args: &PresenceArgs) -> anyhow::Result<ExitCode> {
        Target::new(Scope::Room, &args.room)?;
        let emitter = self.connect().await?;
        let answer = if args.stats {
            let stats = emitter.presence_stats(&args.room).await?;
            serde_json::json!({"room": args.room, "clients": stats.clients, "users": stats.users})
        } else {
            let members = emitter.presence(&args.room).await?;
            crate::presence_json(&args.room, members)
        };
        println!("{answer}");
        Ok(ExitCode::SUCCESS)
    }

    async fn consume(&self, args: &ConsumeArgs) -> anyhow::Result<ExitCode> {
        let start = if args.new_only {
            StartFrom::New
        } else {
            StartFrom::Beginning
        };
        let tls = self.redis_tls.load()?;
        let mut builder = Inbox::builder(&self.redis_url, &args.group, &args.consumer);
        if !self.redis_cluster_nodes.is_empty() {
            builder = builder.cluster(node_urls(&self.redis_cluster_nodes));
        }
        if let Some(sentinels) = self.redis_sentinel.sentinels(Some(&self.redis_url), &tls)? {
            builder = builder.sentinels(std::sync::Arc::new(sentinels));
        }
        let mut inbox = builder
            .tls(tls)
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
        if let Some(master) = &self.redis_sentinel.master {
            format!(
                "the master {master:?} of the sentinels {}",
                self.redis_sentinel.sentinels.join(",")
            )
        } else if self.redis_cluster_nodes.is_empty() {
            redact(&self.redis_url)
        } else {
            let nodes: Vec<String> = self.redis_cluster_nodes.iter().map(|n| redact(n)).collect();
            format!("the cluster at {}", nodes.join(","))
        }
    }

    async fn connect(&self) -> anyhow::Result<Emitter> {
        let tls = self.redis_tls.load()?;
        let mut builder = if self.redis_cluster_nodes.is_empty() {
            Emitter::builder(&self.redis_url)
        } else {
            Emitter::cluster_builder(node_urls(&self.redis_cluster_nodes))
        };
        if let Some(sentinels) = self.redis_sentinel.sentinels(Some(&self.redis_url), &tls)? {
            builder = builder.sentinels(std::sync::Arc::new(sentinels));
        }
        builder
            .tls(tls)
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
        let to = stdin::Destination::Redis(&emitter);
        Ok(stdin::send(to, input, &args.except).await.into())
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
        /// An `rpc`'s `ref` and deadline: a reply is awaited.
        #[serde(skip_serializing_if = "Option::is_none")]
        rpc: Option<&'a ferrocast_protocol::rpc::RpcCall>,
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
        rpc: m.rpc.as_ref(),
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
