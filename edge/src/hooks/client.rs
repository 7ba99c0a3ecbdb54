//! The one HTTP client every hook request goes through: hyper's, with pooled connections, the
//! hook key, a timeout that includes waiting for a free slot, bounded concurrency, a span whose
//! trace continues into the hook (`traceparent`), and metrics.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::HookConfig;
use crate::ops::metrics::{HookLabel, metrics};

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
}

/// An answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body (at most 64 KiB).
    pub body: Bytes,
}

/// Sends hook requests.
pub struct HookClient {
    http: Client<HttpConnector, Full<Bytes>>,
    key: Option<String>,
    timeout: Duration,
    slots: Semaphore,
}

impl HookClient {
    /// A client as configured.
    pub fn new(config: &HookConfig) -> HookClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.hook_timeout));
        HookClient {
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            key: config.hook_key.clone(),
            timeout: config.hook_timeout,
            slots: Semaphore::new(config.hook_concurrency.max(1)),
        }
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
        let result = tokio::time::timeout(self.timeout, self.send(url, body, &span))
            .instrument(span.clone())
            .await
            .unwrap_or(Err(HookError::Timeout));
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
        };
        let m = metrics();
        m.hook_requests
            .get_or_create(&HookLabel { hook, outcome })
            .inc();
        m.hook_duration
            .get_or_create(&HookLabel { hook, outcome })
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn send(
        &self,
        url: &str,
        body: Vec<u8>,
        span: &tracing::Span,
    ) -> Result<Answer, HookError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| HookError::Transport("shutting down".into()))?;
        let mut request = Request::post(url).header(CONTENT_TYPE, "application/json");
        if let Some(key) = &self.key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        if let Some(traceparent) = span.in_scope(ferrocast_emitter::current_traceparent) {
            request = request.header("traceparent", traceparent);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HookError::Transport(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| HookError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| HookError::Transport(e.to_string()))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}
