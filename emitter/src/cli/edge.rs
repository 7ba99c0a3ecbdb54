//! The client of an edge's HTTP API that the command uses with `--edge URL --api-key KEY`.
//! Plain HTTP (the internal listener is never exposed publicly), one connection reused for the
//! run, each request made as [`crate::http`] makes them. A leaf: the command's runner
//! ([`over_edge`](super::over_edge)) and `send --stdin` both use it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::http::{self, Answer, HttpError};

/// Largest answer read, in bytes.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// A request the edge did not answer with success.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The edge could not be reached, timed out, or its bus is down (503): try again later.
    #[error("edge unavailable: {0}")]
    Unavailable(String),
    /// The edge refused the request: its status, and the error's code and message.
    #[error("edge refused the request ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The API's error code (`BAD_FRAME`, `INVALID_ROOM`, ...).
        code: String,
        /// Why.
        message: String,
    },
    /// The URL cannot be used.
    #[error("invalid --edge URL: {0}")]
    InvalidUrl(String),
}

impl EdgeError {
    /// Whether the request itself was at fault (a 4xx other than a missing key).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, EdgeError::Refused { status, .. } if (400..500).contains(status) && *status != 401)
            || matches!(self, EdgeError::InvalidUrl(_))
    }
}

/// An edge's HTTP API.
pub struct Edge {
    base: String,
    key: String,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Edge {
    /// The API at `url` (`http://host:port`, the edge's internal listener), with `key`.
    pub fn new(url: &str, key: &str, timeout: Duration) -> Result<Edge, EdgeError> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(EdgeError::InvalidUrl(format!(
                "{url}: give http://host:port of the edge's internal listener"
            )));
        }
        Ok(Edge {
            base,
            key: key.to_owned(),
            timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// `POST path` with a JSON body; the answer's JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, EdgeError> {
        let body = serde_json::to_vec(body).map_err(|e| EdgeError::InvalidUrl(e.to_string()))?;
        self.call(Method::POST, path, Bytes::from(body)).await
    }

    /// `POST path` with `body`, JSON text already; the answer's JSON.
    pub async fn post_text(&self, path: &str, body: String) -> Result<Value, EdgeError> {
        self.call(Method::POST, path, Bytes::from(body)).await
    }

    /// `GET path`; the answer's JSON.
    pub async fn get(&self, path: &str) -> Result<Value, EdgeError> {
        self.call(Method::GET, path, Bytes::new()).await
    }

    async fn call(&self, method: Method, path: &str, body: Bytes) -> Result<Value, EdgeError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let url = format!("{}{path}", self.base);
        let answer = async {
            let request = http::json_request(method, &url, Some(&self.key), body)?;
            http::send(&self.client, request, MAX_ANSWER, deadline).await
        };
        let answer = answer.await.map_err(|e| match e {
            HttpError::Request(e) => EdgeError::InvalidUrl(e.to_string()),
            HttpError::Timeout => {
                EdgeError::Unavailable(format!("no answer within {:?}", self.timeout))
            }
            e @ (HttpError::Send(_) | HttpError::Read(_)) => EdgeError::Unavailable(e.to_string()),
        })?;
        answer_json(&answer)
    }
}

/// An answer's JSON on success; otherwise the API's error, a 503 counting as unavailable.
fn answer_json(answer: &Answer) -> Result<Value, EdgeError> {
    let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    if answer.status == 200 {
        return Ok(value);
    }
    let error = &value["error"];
    let code = error["code"].as_str().unwrap_or("").to_owned();
    let message = error["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_owned());
    if answer.status == 503 {
        return Err(EdgeError::Unavailable(message));
    }
    Err(EdgeError::Refused {
        status: answer.status,
        code,
        message,
    })
}
