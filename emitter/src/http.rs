//! One JSON request over HTTP, the way the workspace makes them: a bearer key, a JSON body, the
//! answer read up to a byte limit, and all of it done by a deadline. The emitter command's client
//! of an edge's HTTP API (`--edge`) and the edge's hook client both send through it, each with its
//! own hyper client (connector, TLS, pool) and its own errors.
//!
//! It lives in this crate because the emitter's `--edge` client needs it and the edge links the
//! emitter already: no crate gains a dependency for it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;
use tokio::time::Instant;

/// A request with a JSON body, before it is sent.
pub type JsonRequest = Request<Full<Bytes>>;

/// An answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body, at most the limit [`send`] was given.
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be built: a URL or a header value hyper cannot use.
    #[error(transparent)]
    Request(#[from] hyper::http::Error),
    /// Sending failed: no connection, or it broke before the answer's head.
    #[error(transparent)]
    Send(hyper_util::client::legacy::Error),
    /// Reading the answer's body failed, or it was longer than the limit.
    #[error(transparent)]
    Read(Box<dyn std::error::Error + Send + Sync>),
    /// No whole answer by the deadline.
    #[error("no answer in time")]
    Timeout,
}

/// `method url` with `body` (JSON text) and, when there is one, `key` as its bearer token. The
/// caller may add headers of its own before [`send`]ing it.
pub fn json_request(
    method: Method,
    url: &str,
    key: Option<&str>,
    body: Bytes,
) -> Result<JsonRequest, HttpError> {
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .header(CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header(AUTHORIZATION, format!("Bearer {key}"));
    }
    Ok(request.body(Full::new(body))?)
}

/// Sends `request` through `client` and reads the answer's body, at most `max_answer` bytes,
/// giving up at `deadline`: a slow or endless answer cannot hold the caller past it.
pub async fn send<C>(
    client: &Client<C, Full<Bytes>>,
    request: JsonRequest,
    max_answer: usize,
    deadline: Instant,
) -> Result<Answer, HttpError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let exchange = async {
        let response = client.request(request).await.map_err(HttpError::Send)?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), max_answer)
            .collect()
            .await
            .map_err(HttpError::Read)?
            .to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout_at(deadline, exchange)
        .await
        .unwrap_or(Err(HttpError::Timeout))
}

/// `text` escaped for a URL's query string: every byte but the unreserved characters
/// percent-encoded.
pub fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
