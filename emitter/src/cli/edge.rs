//! The command over an edge's HTTP API (`--edge URL --api-key KEY`) instead of Redis: for a
//! single-node edge, or a machine that cannot reach Redis. Plain HTTP (the internal listener is
//! never exposed publicly), one connection reused for the run, through hyper's client.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

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
        self.call("POST", path, Bytes::from(body)).await
    }

    /// `POST path` with `body`, JSON text already; the answer's JSON.
    pub async fn post_text(&self, path: &str, body: String) -> Result<Value, EdgeError> {
        self.call("POST", path, Bytes::from(body)).await
    }

    /// `GET path`; the answer's JSON.
    pub async fn get(&self, path: &str) -> Result<Value, EdgeError> {
        self.call("GET", path, Bytes::new()).await
    }

    async fn call(&self, method: &str, path: &str, body: Bytes) -> Result<Value, EdgeError> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.key))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| EdgeError::InvalidUrl(e.to_string()))?;
        let answer = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| EdgeError::Unavailable(e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| EdgeError::Unavailable(e.to_string()))?
                .to_bytes();
            Ok::<_, EdgeError>((status, bytes))
        };
        let (status, bytes) =
            tokio::time::timeout(self.timeout, answer)
                .await
                .map_err(|_| {
                    EdgeError::Unavailable(format!("no answer within {:?}", self.timeout))
                })??;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status == 200 {
            return Ok(value);
        }
        let error = &value["error"];
        let code = error["code"].as_str().unwrap_or("").to_owned();
        let message = error["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        if status == 503 {
            return Err(EdgeError::Unavailable(message));
        }
        Err(EdgeError::Refused {
            status,
            code,
            message,
        })
    }
}

impl super::Cli {
    /// Runs the command through the edge at `url`.
    pub(super) async fn over_edge(&self, url: &str) -> anyhow::Result<std::process::ExitCode> {
        use super::Command;
        use super::outcome::BadArgument;
        use serde_json::json;
        let key = self
            .api_key
            .as_deref()
            .ok_or_else(|| BadArgument("--edge needs --api-key (or FERROCAST_API_KEY)".into()))?;
        let edge = Edge::new(url, key, self.redis_timeout)?;
        let session = |user: &Option<String>, client: &Option<String>| match (user, client) {
            (Some(user), _) => Ok(json!({ "user": user })),
            (_, Some(client)) => Ok(json!({ "client": client })),
            _ => Err(BadArgument("give --user or --client".into())),
        };
        let answer = match &self.command {
            Command::Send(args) if args.stdin => {
                let input =
                    tokio::io::BufReader::with_capacity(super::stdin::BUFFER, tokio::io::stdin());
                let to = super::stdin::Destination::Edge(&edge);
                let outcome = super::stdin::send(to, input, &args.except).await;
                return Ok(outcome.into());
            }
            Command::Send(args) => {
                let target = match (&args.room, &args.user, &args.client) {
                    (Some(room), _, _) => ("room", Value::from(room.as_str())),
                    (_, Some(user), _) => ("user", Value::from(user.as_str())),
                    (_, _, Some(client)) => ("client", Value::from(client.as_str())),
                    _ => ("all", Value::Bool(true)),
                };
                let text = match (&args.data, &args.data_file) {
                    (Some(data), _) => data.clone(),
                    (_, Some(path)) => std::fs::read_to_string(path)
                        .map_err(|e| BadArgument(format!("cannot read {}: {e}", path.display())))?,
                    _ => {
                        return Err(BadArgument(
                            "give the message with --data JSON or --data-file FILE".into(),
                        )
                        .into());
                    }
                };
                let data: &serde_json::value::RawValue = serde_json::from_str(text.trim())
                    .map_err(|e| crate::EmitError::InvalidJson(e.to_string()))?;
                let event = args.event.as_deref().unwrap_or_default();
                let body = publish_body(target, event, data.get(), &args.except);
                let answer = edge.post_text("/api/publish", body).await?;
                println!("{}", answer["offset"].as_str().unwrap_or_default());
                return Ok(std::process::ExitCode::SUCCESS);
            }
            Command::Join(args) | Command::Leave(args) => {
                let mut body = session(&args.user, &args.client)?;
                body["room"] = json!(args.room);
                let path = match self.command {
                    Command::Join(_) => "/api/join",
                    _ => "/api/leave",
                };
                edge.post(path, &body).await?
            }
            Command::Disconnect(args) => {
                if args.room.is_some() || args.all {
                    return Err(BadArgument(
                        "over --edge, disconnect takes --user or --client".into(),
                    )
                    .into());
                }
                let mut body = session(&args.user, &args.client)?;
                body["code"] = json!(args.code);
                body["reason"] = json!(args.reason);
                edge.post("/api/disconnect", &body).await?
            }
            Command::Presence(args) => {
                let route = if args.stats {
                    "presence_stats"
                } else {
                    "presence"
                };
                edge.get(&format!("/api/{route}?room={}", query_escape(&args.room)))
                    .await?
            }
            Command::Consume(_) => {
                return Err(
                    BadArgument("consume reads the inbox in Redis (not --edge)".into()).into(),
                );
            }
        };
        println!("{answer}");
        Ok(std::process::ExitCode::SUCCESS)
    }
}

/// The API's publish body for a message to `target` (its key and value), as JSON text with
/// `data` as it was written: a publish through the API means what the same one through Redis
/// means, number for number and key for key.
pub(super) fn publish_body(
    (key, value): (&str, Value),
    event: &str,
    data: &str,
    except: &[String],
) -> String {
    format!(
        "{{\"{key}\":{value},\"event\":{},\"data\":{data},\"except\":{}}}",
        Value::from(event),
        Value::from(except.to_vec())
    )
}

/// `text` escaped for a query string.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
