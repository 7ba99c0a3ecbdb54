//! The one HTTP client every hook request goes through: hyper's, with pooled connections and
//! TLS, each request made as [`ferrocast_emitter::http`] makes them (the hook key, a bounded
//! answer), plus what only hooks need: a timeout that includes waiting for a free slot, bounded
//! concurrency, each client address's share of it, a span whose trace continues into the hook
//! (`traceparent`), and metrics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocast_emitter::http::{self, Answer, HttpError};
use http_body_util::Full;
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::HookConfig;
use crate::ops::metrics::{HookLabel, metrics};
use crate::peer::peer_group;

/// Largest hook answer read, in bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// Why a hook gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// No answer within --hook-timeout (waiting for a free slot included).
    #[error("no answer within the hook timeout")]
    Timeout,
    /// The request failed (connection refused, reset, ...).
    #[error("hook unreachable: {0}")]
    Transport(String),
    /// The client's address has its share of the slots in use already: not sent.
    #[error("too many hook requests from this address at once")]
    Busy,
}

/// Sends hook requests, over plain HTTP or TLS (https:// URLs, checked against the system's
/// roots or --hook-ca-file).
pub struct HookClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    key: Option<String>,
    timeout: Duration,
    slots: Semaphore,
    /// Requests in flight or waiting per client address (see [`HookClient::post_from`]).
    shares: Mutex<HashMap<IpAddr, usize>>,
    /// Most of them one address may have.
    share: usize,
}

impl HookClient {
    /// A client as configured; fails if --hook-ca-file cannot be used. `per_peer`: whether
    /// each client address gets only its share of the slots (not behind a proxy, whose address
    /// every client shares: `--max-pending-per-ip 0`).
    pub fn new(config: &HookConfig, per_peer: bool) -> Result<HookClient, String> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.hook_timeout));
        // https:// goes through this connector's TLS; http:// stays plain.
        connector.enforce_http(false);
        let ca = match &config.hook_ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("cannot read --hook-ca-file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let roots = ferrocast_redis::tls::root_store(ca.as_deref(), "--hook-ca-file")?;
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(HookClient {
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            key: config.hook_key.clone(),
            timeout: config.hook_timeout,
            slots: Semaphore::new(config.hook_concurrency.max(1)),
            shares: Mutex::new(HashMap::new()),
            // A quarter of the slots: the slots are one queue, and one address whose tokens the
            // hook never answers would otherwise push everyone else's logins to the timeout.
            share: if per_peer {
                (config.hook_concurrency / 4).max(1)
            } else {
                usize::MAX
            },
        })
    }

    /// Like [`HookClient::post`], on behalf of a client at `peer`: refused at once
    /// ([`HookError::Busy`]) if that address has its share of the slots in flight or waiting
    /// already, so no address can hold more than a bounded part of the hook's capacity.
    pub async fn post_from(
        &self,
        peer: IpAddr,
        hook: &'static str,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Answer, HookError> {
        let Some(_share) = self.take_share(peer) else {
            record(hook, "busy", Instant::now());
            return Err(HookError::Busy);
        };
        self.post(hook, url, body).await
    }

    fn take_share(&self, peer: IpAddr) -> Option<Share<'_>> {
        let peer = peer_group(peer);
        let mut shares = self.shares.lock();
        let held = shares.entry(peer).or_insert(0);
        if *held >= self.share {
            return None;
        }
        *held += 1;
        Some(Share { client: self, peer })
    }

    /// POSTs `body` (JSON) to `url` for hook `hook` (a metric label).
    pub async fn post(
        &self,
        hook: &'static str,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Answer, HookError> {
        let span = tracing::info_span!("hook", hook, status = tracing::field::Empty);
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let result = self
            .send(url, body, &span, deadline)
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(answer) => {
                span.record("status", answer.status);
                if answer.status < 500 {
                    "answered"
                } else {
                    "failed"
                }
            }
            Err(HookError::Timeout) => "timeout",
            Err(HookError::Transport(_)) => "unreachable",
            Err(HookError::Busy) => "busy",
        };
        record(hook, outcome, started);
        result
    }

    /// Waits for a slot, then sends: both by `deadline`.
    async fn send(
        &self,
        url: &str,
        body: Vec<u8>,
        span: &tracing::Span,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, HookError> {
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| HookError::Timeout)?
            .map_err(|_| HookError::Transport("shutting down".into()))?;
        let mut request =
            http::json_request(Method::POST, url, self.key.as_deref(), Bytes::from(body))?;
        if let Some(traceparent) = span.in_scope(ferrocast_emitter::current_traceparent) {
            let value = HeaderValue::try_from(traceparent)
                .map_err(|e| HookError::Transport(e.to_string()))?;
            request
                .headers_mut()
                .insert(HeaderName::from_static("traceparent"), value);
        }
        Ok(http::send(&self.http, request, MAX_ANSWER, deadline).await?)
    }
}

impl From<HttpError> for HookError {
    fn from(error: HttpError) -> HookError {
        match error {
            HttpError::Timeout => HookError::Timeout,
            other => HookError::Transport(other.to_string()),
        }
    }
}

/// One request's place in its address's share, given back on drop.
struct Share<'a> {
    client: &'a HookClient,
    peer: IpAddr,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut shares = self.client.shares.lock();
        if let Some(held) = shares.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                shares.remove(&self.peer);
            }
        }
    }
}

/// Counts a hook request and its duration under `outcome`.
fn record(hook: &'static str, outcome: &'static str, started: Instant) {
    let m = metrics();
    m.hook_requests
        .get_or_create(&HookLabel { hook, outcome })
        .inc();
    m.hook_duration
        .get_or_create(&HookLabel { hook, outcome })
        .observe(started.elapsed().as_secs_f64());
}
