//! The command run over an edge's HTTP API (`--edge URL --api-key KEY`) instead of Redis: for a
//! single-node edge, or a machine that cannot reach Redis.

use serde_json::Value;

use super::edge::{Edge, publish_body};

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
