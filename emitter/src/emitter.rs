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

use std::sync::Arc;
use std::time::Duration;

use ferrocast_protocol::keys::{Keys, Target};
use ferrocast_protocol::names::NameError;
use ferrocast_protocol::offset::Offset;
use ferrocast_protocol::script::{self, PUBLISH_SCRIPT};
use ferrocast_protocol::{Envelope, Kind, Scope, data};
use serde::Serialize;
use uuid::Uuid;

use crate::error::EmitError;
use crate::redis::Backoff;
use crate::redis::pool::Manager;

/// Longest wait between two attempts of a publish.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Most messages sent in one pipeline by [`Emitter::emit_batch`].
const PIPELINE_CHUNK: usize = 512;

/// Settings for an [`Emitter`]; [`Emitter::builder`] starts from the defaults.
#[derive(Debug, Clone)]
pub struct EmitterBuilder {
    url: String,
    cluster_nodes: Vec<String>,
    prefix: String,
    history_len: u64,
    history_ttl: Duration,
    pool_size: u32,
    connect_timeout: Duration,
    response_timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
}

impl EmitterBuilder {
    /// How often a publish that found Redis unreachable is tried again (default 2), and the
    /// first wait before retrying (default 100 ms, doubling each time, at most 2 s). A publish
    /// then fails with [`EmitError::Unavailable`] after at most `retries + 1` attempts, each
    /// bounded by the connect and response timeouts.
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.retry_backoff = backoff;
        self
    }

    /// Key prefix shared with the edges (default `fc`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Approximate number of messages kept per target for resuming clients (default 1000).
    pub fn history_len(mut self, len: u64) -> Self {
        self.history_len = len;
        self
    }

    /// How long a target's history lives after its last publish (default 10 minutes).
    pub fn history_ttl(mut self, ttl: Duration) -> Self {
        self.history_ttl = ttl;
        self
    }

    /// Most pooled Redis connections (default 4; each carries many requests at once).
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long to wait for a Redis connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for Redis to answer a command (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects, and loads the publish script so the first publish needs no extra round trip.
    /// Fails with [`EmitError::Unavailable`] if Redis cannot be reached now.
    pub async fn connect(self) -> Result<Emitter, EmitError> {
        let emitter = self.build()?;
        emitter
            .retrying(|| async {
                let inner = &emitter.inner;
                match &inner.backend {
                    Backend::Single(pool) => {
                        let mut conn = pool.dedicated_connection().await?;
                        let loaded = inner.script.prepare_invoke().load_async(conn.get()).await;
                        conn.check(loaded)?;
                        // A full pool refuses the connection; it is then simply dropped.
                        let _ = pool.add(conn);
                    }
                    // Each master loads the script on its first use (EVALSHA falls back).
                    Backend::Cluster(conn) => {
                        redis::cmd("PING")
                            .query_async::<()>(&mut conn.clone())
                            .await?;
                    }
                }
                Ok(())
            })
            .await?;
        Ok(emitter)
    }

    /// Builds the emitter without connecting: connections are made on first use, so this only
    /// fails on bad settings. For long-running processes that must start while Redis is down.
    pub fn build(self) -> Result<Emitter, EmitError> {
        if !Keys::is_valid_prefix(&self.prefix) {
            return Err(EmitError::InvalidName(NameError::Character {
                what: "prefix",
            }));
        }
        let backend = if self.cluster_nodes.is_empty() {
            let client = redis::Client::open(self.url.as_str())
                .map_err(|e| EmitError::InvalidUrl(e.to_string()))?;
            Backend::Single(
                bb8::Pool::builder()
                    .max_size(self.pool_size)
                    .test_on_check_out(false)
                    // Our own retry loop decides how often to try; bb8 would retry silently
                    // until its timeout.
                    .retry_connection(false)
                    .connection_timeout(self.connect_timeout)
                    .build_unchecked(Manager::new(
                        client,
                        self.connect_timeout,
                        self.response_timeout,
                    )),
            )
        } else {
            // One cluster connection: it keeps a multiplexed connection per node, routes each
            // call to its slot's master and follows MOVED redirections itself.
            let client = redis::cluster::ClusterClientBuilder::new(self.cluster_nodes.clone())
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.response_timeout)
                .retries(2)
                .build()
                .map_err(|e| EmitError::InvalidUrl(e.to_string()))?;
            Backend::Cluster(
                client.get_pending_async_connection_with_config(
                    redis::cluster::ClusterConfig::new()
                        .set_connection_timeout(self.connect_timeout)
                        .set_response_timeout(self.response_timeout),
                ),
            )
        };
        Ok(Emitter {
            inner: Arc::new(Inner {
                backend,
                keys: Keys::new(&self.prefix),
                script: redis::Script::new(PUBLISH_SCRIPT),
                history_len: self.history_len.max(1),
                history_ttl_ms: self.history_ttl.as_millis().clamp(1, u64::MAX as u128) as u64,
                retries: self.retries,
                retry_backoff: self.retry_backoff,
            }),
        })
    }
}

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

    fn publication(&self, target: Result<Target, NameError>) -> Publication<'_> {
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
            crate::redis::pool::revalidate(pool, std::time::Duration::from_secs(1)).await;
        }
    }

    async fn pipeline(
        &self,
        chunk: &[Message],
    ) -> Result<Vec<Result<Offset, EmitError>>, EmitError> {
        let pool = match &self.inner.backend {
            Backend::Single(pool) => pool,
            Backend::Cluster(conn) => return Ok(self.cluster_calls(conn, chunk).await),
        };
        let mut conn = pool.get().await?;
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
    async fn cluster_calls(
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
                        if crate::redis::errors::is_transient(&e)
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
                    let mut conn = pool.get().await?;
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

    /// Runs `attempt` until it succeeds, fails for a reason other than an unreachable Redis, or
    /// has been retried as often as configured, waiting longer after each failure. A retry
    /// resends the same message ids, so edges drop any copy of a message whose first attempt
    /// did reach Redis.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, EmitError>
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

    fn invocation<'s>(&'s self, message: &Message) -> redis::ScriptInvocation<'s> {
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

/// A message being addressed; finish it with [`emit`](Publication::emit),
/// [`emit_raw`](Publication::emit_raw) or, for a batch, [`message`](Publication::message).
#[must_use = "a publication does nothing until emitted"]
pub struct Publication<'e> {
    emitter: &'e Emitter,
    target: Result<Target, NameError>,
    except: Vec<String>,
    id: Option<Uuid>,
    trace: Option<String>,
}

impl Publication<'_> {
    /// Leaves out one connection, typically the client whose action caused the message.
    pub fn except(mut self, client: impl Into<String>) -> Self {
        self.except.push(client.into());
        self
    }

    /// Uses a message id of the caller's instead of a fresh UUID v7.
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Continues the W3C trace `traceparent` in the edges that deliver the message. Without it,
    /// the current `tracing` span's OpenTelemetry context is used, if it has one.
    pub fn trace(mut self, traceparent: impl Into<String>) -> Self {
        self.trace = Some(traceparent.into());
        self
    }

    /// Publishes `data` serialized as JSON. Returns the message's offset.
    pub async fn emit<T: Serialize + ?Sized>(
        self,
        event: &str,
        data: &T,
    ) -> Result<Offset, EmitError> {
        let emitter = self.emitter;
        let message = self.message(event, data)?;
        emitter.publish(&message).await
    }

    /// Publishes `json`, which must be JSON text; it reaches JSON clients byte for byte.
    pub async fn emit_raw(
        self,
        event: &str,
        json: impl Into<Vec<u8>>,
    ) -> Result<Offset, EmitError> {
        let emitter = self.emitter;
        let message = self.message_raw(event, json.into())?;
        emitter.publish(&message).await
    }

    /// Makes the target's sessions join `room`, whatever their tokens allow (the worker decides);
    /// each gets `joined` with `"by":"server"`. Sessions already in the room, or in as many
    /// rooms as an edge allows, are left as they are. Acts on sessions connected now: a client
    /// that resumes later does not replay it.
    pub async fn join_room(self, room: &str) -> Result<Offset, EmitError> {
        let target = self.target.clone()?;
        self.control(Envelope::join(&target, room)).await
    }

    /// Makes the target's sessions leave `room`; each member gets `left` with `"by":"server"`.
    pub async fn leave_room(self, room: &str) -> Result<Offset, EmitError> {
        let target = self.target.clone()?;
        self.control(Envelope::leave(&target, room)).await
    }

    /// Closes the target's sessions with close code 4010 and `reason` (at most 123 bytes).
    pub async fn disconnect(self, reason: &str) -> Result<Offset, EmitError> {
        self.disconnect_with_code(ferrocast_protocol::close::DISCONNECTED, reason)
            .await
    }

    /// Closes the target's sessions with an application close code (4010-4999) and `reason`.
    pub async fn disconnect_with_code(self, code: u16, reason: &str) -> Result<Offset, EmitError> {
        let target = self.target.clone()?;
        self.control(Envelope::disconnect(&target, code, reason))
            .await
    }

    async fn control(self, mut envelope: Envelope) -> Result<Offset, EmitError> {
        for client in &self.except {
            Target::new(Scope::Client, client)?;
        }
        envelope.except = self.except;
        envelope.trace = self.trace.or_else(current_traceparent);
        if let Some(id) = self.id {
            envelope.id = id;
        }
        let mut message = Message::from_envelope(&envelope)?;
        message.chosen_id = self.id;
        self.emitter.publish(&message).await
    }

    /// Prepares the message for [`Emitter::emit_batch`].
    pub fn message<T: Serialize + ?Sized>(
        self,
        event: &str,
        data: &T,
    ) -> Result<Message, EmitError> {
        let json = serde_json::to_vec(data)?;
        self.message_raw(event, json)
    }

    /// Prepares a message whose data is already JSON text, for [`Emitter::emit_batch`].
    pub fn message_raw(self, event: &str, json: Vec<u8>) -> Result<Message, EmitError> {
        Message::build(self.target?, event, json, self.except, self.id, self.trace)
    }
}

/// A message ready to publish: checked and encoded, so publishing it cannot fail on its content.
#[derive(Debug, Clone)]
pub struct Message {
    target: Target,
    envelope: Vec<u8>,
    /// The id, when the publisher chose it: publishing it again is then a no-op.
    chosen_id: Option<Uuid>,
}

impl Message {
    /// Checks and encodes a message: `event` must be a valid event name, `json` valid JSON text,
    /// and each of `except` a valid client id. `id` defaults to a fresh UUID v7.
    pub fn new(
        target: Target,
        event: &str,
        json: Vec<u8>,
        except: Vec<String>,
        id: Option<Uuid>,
    ) -> Result<Message, EmitError> {
        Message::build(target, event, json, except, id, None)
    }

    fn build(
        target: Target,
        event: &str,
        json: Vec<u8>,
        except: Vec<String>,
        id: Option<Uuid>,
        trace: Option<String>,
    ) -> Result<Message, EmitError> {
        for client in &except {
            Target::new(Scope::Client, client)?;
        }
        let mut envelope = Envelope::message(&target, event, json);
        envelope.except = except;
        envelope.trace = trace.or_else(current_traceparent);
        if let Some(id) = id {
            envelope.id = id;
        }
        let mut message = Message::from_envelope(&envelope)?;
        message.chosen_id = id;
        Ok(message)
    }

    /// Checks and encodes a complete envelope (for control kinds, or a caller that builds its
    /// own). A `msg`'s data must be JSON that every client can be sent, MessagePack ones
    /// included: otherwise [`EmitError::UnsupportedData`].
    pub fn from_envelope(envelope: &Envelope) -> Result<Message, EmitError> {
        let is_msg = envelope.kind == Kind::Msg;
        if is_msg && nests_too_deep(&envelope.data) {
            // `validate` parses with serde_json, which gives up at this depth as well and would
            // call deep but valid JSON "not valid JSON"; `data::check` names the real reason.
            data::check(&envelope.data)?;
        }
        envelope.validate()?;
        if is_msg {
            // `validate` checks only the JSON's syntax: it decodes no number or escape, so
            // `1e400` and `"\ud800"` pass it though no MessagePack client could be sent them.
            data::check(&envelope.data)?;
        }
        Ok(Message {
            target: envelope.target()?,
            envelope: envelope.encode()?,
            chosen_id: None,
        })
    }
}

/// Whether arrays and objects in `json` nest as deep as [`data::MAX_DEPTH`] or deeper, counted
/// without parsing so that any depth can be measured. Brackets inside strings do not count.
fn nests_too_deep(json: &[u8]) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth >= data::MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The W3C traceparent of the current `tracing` span, when it carries an OpenTelemetry context.
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    fn trace_of(message: &Message) -> Option<String> {
        Envelope::decode(&message.envelope).ok()?.trace
    }

    // A runtime, for the emitter's (unconnected) pool.
    #[tokio::test]
    async fn data_that_msgpack_cannot_carry_is_refused_when_the_message_is_made() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let deep = nested(data::MAX_DEPTH + 1);
        for bad in [
            &b"1e400"[..],
            b"-1e400",
            br#""\ud800""#,
            br#"{"a":[1,"x\udc00y"]}"#,
            deep.as_bytes(),
        ] {
            let result = Message::new(Target::All, "e", bad.to_vec(), vec![], None);
            assert!(
                matches!(result, Err(EmitError::UnsupportedData(_))),
                "{}: {result:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // The publication API makes its messages the same way.
        let emitter = Emitter::builder("redis://127.0.0.1:1").build().unwrap();
        let result = emitter.to_room("r").message_raw("e", b"1e400".to_vec());
        assert!(
            matches!(result, Err(EmitError::UnsupportedData(_))),
            "{result:?}"
        );
        let error = Message::new(Target::All, "e", deep.into_bytes(), vec![], None).unwrap_err();
        assert!(error.to_string().contains("MessagePack"), "{error}");

        // JSON that is not JSON is still called that; what MessagePack carries still passes.
        for bad in [&b"{oops"[..], b"[", &[0xff, b'1']] {
            let result = Message::new(Target::All, "e", bad.to_vec(), vec![], None);
            assert!(
                matches!(result, Err(EmitError::InvalidJson(_))),
                "{result:?}"
            );
        }
        let brackets_in_a_string = format!("\"{}\"", "[".repeat(1000));
        for good in [
            nested(data::MAX_DEPTH - 1),
            brackets_in_a_string,
            r#"{"max":1.7976931348623157e308,"pair":"\ud83d\ude00","q":"\\\"["}"#.to_owned(),
        ] {
            let result = Message::new(Target::All, "e", good.clone().into_bytes(), vec![], None);
            assert!(result.is_ok(), "{good}: {result:?}");
        }
    }

    #[test]
    fn the_current_span_s_trace_goes_into_the_envelope() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let outside = Message::new(Target::All, "e", b"1".to_vec(), vec![], None).unwrap();
            assert_eq!(trace_of(&outside), None);
            let span = tracing::info_span!("job");
            let _entered = span.enter();
            let message = Message::new(Target::All, "e", b"1".to_vec(), vec![], None).unwrap();
            let trace = trace_of(&message).expect("traceparent");
            let parts: Vec<&str> = trace.split('-').collect();
            assert_eq!(parts.len(), 4, "{trace}");
            assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16));
        });
    }
}
