//! `Emitter`: publish messages to rooms, users, clients or everyone through Redis.
//!
//! ```no_run
//! # async fn example() -> Result<(), ferrocast_emitter::EmitError> {
//! use ferrocast_emitter::Emitter;
//! let emitter = Emitter::connect("redis://127.0.0.1:6379").await?;
//! let offset = emitter
//!     .to_room("chat:42")
//!     .except("a-client-id")
//!     .emit("chat.message", &serde_json::json!({"text": "hello"}))
//!     .await?;
//! println!("published at {offset}");
//! # Ok(()) }
//! ```

mod builder;
mod message;
mod nodes;
mod presence;
mod publication;
mod reply;

pub use builder::EmitterBuilder;
pub use message::{Message, current_traceparent};
pub use presence::{PresenceChanges, PresenceList, PresenceUpdate, presence_json};
pub use publication::Publication;

use std::sync::Arc;
use std::time::Duration;

use ferrocast_protocol::Scope;
use ferrocast_protocol::keys::{Keys, Target};
use ferrocast_protocol::names::NameError;
use ferrocast_protocol::offset::Offset;
use ferrocast_protocol::script::{self};

use crate::error::EmitError;
use ferrocast_redis::Backoff;
use ferrocast_redis::pool::Manager;

/// Longest wait between two attempts of a publish.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Most messages sent in one pipeline by [`Emitter::emit_batch`].
const PIPELINE_CHUNK: usize = 512;

/// Publishes messages through Redis. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    keys: Keys,
    script: redis::Script,
    history_len: u64,
    history_ttl_ms: u64,
    retries: u32,
    retry_backoff: Duration,
}

/// Where publishes go.
enum Backend {
    /// One Redis, through a pool of multiplexed connections.
    Single(bb8::Pool<Manager>),
    /// A Redis Cluster: the script runs on its target's master, and the live message goes out
    /// with SPUBLISH (sharded pub/sub).
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Emitter {
    /// Settings for an emitter publishing through a Redis Cluster, given some of its nodes
    /// (`redis://host:port` each; the rest are discovered).
    pub fn cluster_builder(nodes: impl IntoIterator<Item = impl Into<String>>) -> EmitterBuilder {
        let mut builder = Emitter::builder("");
        builder.cluster_nodes = nodes.into_iter().map(Into::into).collect();
        builder
    }

    /// Settings for an emitter publishing through the Redis at `url`.
    pub fn builder(url: impl Into<String>) -> EmitterBuilder {
        EmitterBuilder {
            url: url.into(),
            cluster_nodes: Vec::new(),
            prefix: ferrocast_protocol::keys::DEFAULT_PREFIX.to_owned(),
            history_len: script::DEFAULT_HISTORY_LEN,
            history_ttl: Duration::from_millis(script::DEFAULT_HISTORY_TTL_MS),
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            retries: 2,
            retry_backoff: Duration::from_millis(100),
            tls: ferrocast_redis::Tls::default(),
            sentinels: None,
        }
    }

    /// Connects with default settings.
    pub async fn connect(url: impl Into<String>) -> Result<Emitter, EmitError> {
        Emitter::builder(url).connect().await
    }

    /// A message for every member of `room`.
    pub fn to_room(&self, room: &str) -> Publication<'_> {
        self.publication(Target::new(Scope::Room, room))
    }

    /// A message for every session of `user` (a token's `sub`).
    pub fn to_user(&self, user: &str) -> Publication<'_> {
        self.publication(Target::new(Scope::User, user))
    }

    /// A message for one connection, by its client id.
    pub fn to_client(&self, client: &str) -> Publication<'_> {
        self.publication(Target::new(Scope::Client, client))
    }

    /// A message for every connection.
    pub fn broadcast(&self) -> Publication<'_> {
        self.publication(Ok(Target::All))
    }

    pub(super) fn publication(&self, target: Result<Target, NameError>) -> Publication<'_> {
        Publication {
            emitter: self,
            target,
            except: Vec::new(),
            id: None,
            trace: None,
        }
    }

    /// Publishes many prepared messages, pipelined, in order. The outer error means nothing could
    /// be sent (Redis unreachable); otherwise each message has its own result.
    pub async fn emit_batch(
        &self,
        messages: &[Message],
    ) -> Result<Vec<Result<Offset, EmitError>>, EmitError> {
        let mut results = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(PIPELINE_CHUNK) {
            results.extend(self.retrying(|| self.pipeline(chunk)).await?);
        }
        Ok(results)
    }

    /// Drops pooled connections that no longer answer (after Redis restarted, say), so the
    /// next publishes do not each find a dead one first. No-op against a cluster, whose
    /// connection reconnects per node by itself.
    pub async fn revalidate(&self) {
        if let Backend::Single(pool) = &self.inner.backend {
            ferrocast_redis::pool::revalidate(pool, std::time::Duration::from_secs(1)).await;
        }
    }

    pub(super) async fn pipeline(
        &self,
        chunk: &[Message],
    ) -> Result<Vec<Result<Offset, EmitError>>, EmitError> {
        let pool = match &self.inner.backend {
            Backend::Single(pool) => pool,
            Backend::Cluster(conn) => return Ok(self.cluster_calls(conn, chunk).await),
        };
        let mut conn = ferrocast_redis::pool::checkout(pool).await?;
        {
            let mut pipe = redis::pipe();
            // Loading first makes the pipeline immune to a SCRIPT FLUSH or a restarted Redis.
            pipe.ignore_errors()
                .load_script(&self.inner.script)
                .ignore();
            for message in chunk {
                pipe.invoke_script(&self.invocation(message));
            }
            let replies: Vec<redis::RedisResult<(String, String)>> = {
                let reply = pipe.query_async(conn.get()).await;
                conn.check(reply)?
            };
            if replies.len() != chunk.len() {
                return Err(EmitError::Reply(format!(
                    "{} replies for {} messages",
                    replies.len(),
                    chunk.len()
                )));
            }
            Ok(replies.into_iter().map(|r| parse_reply(r?)).collect())
        }
    }

    /// Publishes a batch on a cluster. A pipeline must stay in one slot, so the calls go out at
    /// once and the connection pipelines them per node. The calls that found their shard
    /// unreachable (its master failing over, say) are retried on their own, with the same ids.
    pub(super) async fn cluster_calls(
        &self,
        conn: &redis::cluster_async::ClusterConnection,
        chunk: &[Message],
    ) -> Vec<Result<Offset, EmitError>> {
        let mut results: Vec<Option<Result<Offset, EmitError>>> =
            chunk.iter().map(|_| None).collect();
        let mut todo: Vec<usize> = (0..chunk.len()).collect();
        let mut backoff = Backoff::new(self.inner.retry_backoff, MAX_BACKOFF);
        for attempt in 0..=self.inner.retries {
            let replies = futures_util::future::join_all(todo.iter().map(|&i| {
                let mut conn = conn.clone();
                async move {
                    self.invocation(&chunk[i])
                        .invoke_async::<(String, String)>(&mut conn)
                        .await
                }
            }))
            .await;
            let mut again = Vec::new();
            for (&i, reply) in todo.iter().zip(replies) {
                match reply {
                    Err(e)
                        if ferrocast_redis::errors::is_transient(&e)
                            && attempt < self.inner.retries =>
                    {
                        again.push(i);
                    }
                    other => {
                        results[i] = Some(other.map_err(EmitError::from).and_then(parse_reply))
                    }
                }
            }
            if again.is_empty() {
                break;
            }
            tracing::debug!(failed = again.len(), "publishes failed; retrying");
            backoff.wait().await;
            todo = again;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(EmitError::Reply("no reply".into()))))
            .collect()
    }

    /// Publishes one message (history, then live) and returns its offset: the same script as a
    /// batch, in one round trip, retried like one.
    pub async fn publish(&self, message: &Message) -> Result<Offset, EmitError> {
        self.retrying(|| async {
            match &self.inner.backend {
                Backend::Single(pool) => {
                    let mut conn = ferrocast_redis::pool::checkout(pool).await?;
                    let reply = self.invocation(message).invoke_async(conn.get()).await;
                    parse_reply(conn.check(reply)?)
                }
                Backend::Cluster(conn) => parse_reply(
                    self.invocation(message)
                        .invoke_async(&mut conn.clone())
                        .await?,
                ),
            }
        })
        .await
    }

    /// Runs a script on the single Redis or the cluster, retried like a publish.
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, EmitError> {
        self.retrying(|| async {
            match &self.inner.backend {
                Backend::Single(pool) => {
                    let mut conn = ferrocast_redis::pool::checkout(pool).await?;
                    let reply = invocation.invoke_async(conn.get()).await;
                    Ok(conn.check(reply)?)
                }
                Backend::Cluster(conn) => Ok(invocation.invoke_async(&mut conn.clone()).await?),
            }
        })
        .await
    }

    /// Runs one command on the single Redis or the cluster, retried like a publish.
    pub(super) async fn command<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, EmitError> {
        self.retrying(|| async {
            match &self.inner.backend {
                Backend::Single(pool) => {
                    let mut conn = ferrocast_redis::pool::checkout(pool).await?;
                    let reply = cmd.query_async(conn.get()).await;
                    Ok(conn.check(reply)?)
                }
                Backend::Cluster(conn) => Ok(cmd.query_async(&mut conn.clone()).await?),
            }
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails for a reason other than an unreachable Redis, or
    /// has been retried as often as configured, waiting longer after each failure. A retry
    /// resends the same message ids, so edges drop any copy of a message whose first attempt
    /// did reach Redis.
    pub(super) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, EmitError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, EmitError>>,
    {
        let mut backoff = Backoff::new(self.inner.retry_backoff, MAX_BACKOFF);
        let mut retries = 0;
        loop {
            match attempt().await {
                Err(EmitError::Unavailable(error)) if retries < self.inner.retries => {
                    tracing::debug!(%error, "publish failed; retrying");
                    backoff.wait().await;
                    retries += 1;
                }
                other => return other,
            }
        }
    }

    pub(super) fn invocation<'s>(&'s self, message: &Message) -> redis::ScriptInvocation<'s> {
        let target = message.target.key();
        let [stream, epoch, live] = script::script_keys(&self.inner.keys, &target);
        let mut invocation = self.inner.script.prepare_invoke();
        invocation.key(stream).key(epoch).key(live);
        if let Some(id) = &message.chosen_id {
            invocation.key(self.inner.keys.idempotency(&target, id));
        }
        invocation
            .arg(&message.envelope[..])
            .arg(self.inner.history_len)
            .arg(self.inner.history_ttl_ms)
            .arg(match self.inner.backend {
                Backend::Single(_) => "PUBLISH",
                Backend::Cluster(_) => "SPUBLISH",
            });
        invocation
    }
}

fn parse_reply((id, epoch): (String, String)) -> Result<Offset, EmitError> {
    match (id.parse(), epoch.parse()) {
        (Ok(id), Ok(epoch)) => Ok(Offset { id, epoch }),
        _ => Err(EmitError::Reply(format!("{id} {epoch}"))),
    }
}
