//! The command run over an edge's HTTP API (`--edge URL --api-key KEY`) instead of Redis: for a
//! single-node edge, or a machine that cannot reach Redis. Each command becomes the request the
//! API takes for it; `send` and `send --stdin` print offsets, the others the API's answer.

use std::process::ExitCode;

use ferrocast_protocol::PublishBody;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::edge::Edge;
use super::outcome::BadArgument;
use super::{Cli, Command, DisconnectArgs, MoveArgs, PresenceArgs, SendArgs, stdin};
use crate::http::query_escape;

impl Cli {
    /// Runs the command through the edge at `url`.
    pub(super) async fn over_edge(&self, url: &str) -> anyhow::Result<ExitCode> {
        let edge = self.edge_api(url)?;
        let answer = match &self.command {
            Command::Send(args) if args.stdin => return Ok(send_stdin(&edge, args).await),
            Command::Send(args) => return send_one(&edge, args).await,
            Command::Join(args) => edge.post("/api/join", &move_body(args)?).await?,
            Command::Leave(args) => edge.post("/api/leave", &move_body(args)?).await?,
            Command::Disconnect(args) => {
                edge.post("/api/disconnect", &disconnect_body(args)?)
                    .await?
            }
            Command::Presence(args) => edge.get(&presence_path(args)).await?,
            Command::Consume(_) => {
                let redis_only = "consume reads the inbox in Redis (not --edge)";
                return Err(BadArgument(redis_only.into()).into());
            }
        };
        println!("{answer}");
        Ok(ExitCode::SUCCESS)
    }

    /// The API of the edge at `url`, with the command's key.
    fn edge_api(&self, url: &str) -> anyhow::Result<Edge> {
        let key = self
            .api_key
            .as_deref()
            .ok_or_else(|| BadArgument("--edge needs --api-key (or FERROCAST_API_KEY)".into()))?;
        Ok(Edge::new(url, key, self.redis_timeout)?)
    }
}

/// `send --stdin`: each pipeline of lines one `POST /api/batch`.
async fn send_stdin(edge: &Edge, args: &SendArgs) -> ExitCode {
    let input = tokio::io::BufReader::with_capacity(stdin::BUFFER, tokio::io::stdin());
    let to = stdin::Destination::Edge(edge);
    stdin::send(to, input, &args.except).await.into()
}

/// `send`: one `POST /api/publish`, printing the offset.
async fn send_one(edge: &Edge, args: &SendArgs) -> anyhow::Result<ExitCode> {
    let text = data_text(args)?;
    // Parsed only to be carried as written: the edge checks the message as the emitter would.
    let data: &RawValue = serde_json::from_str(text.trim())
        .map_err(|e| crate::EmitError::InvalidJson(e.to_string()))?;
    // clap's `target` group lets exactly one of the four through.
    let body = PublishBody {
        room: args.room.clone(),
        user: args.user.clone(),
        client: args.client.clone(),
        all: args.all,
        event: args.event.clone().unwrap_or_default(),
        data,
        except: args.except.clone(),
        id: None,
    };
    let answer = edge
        .post_text("/api/publish", serde_json::to_string(&body)?)
        .await?;
    println!("{}", answer["offset"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// The message's JSON text, from `--data` or `--data-file`.
fn data_text(args: &SendArgs) -> Result<String, BadArgument> {
    match (&args.data, &args.data_file) {
        (Some(data), _) => Ok(data.clone()),
        (_, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| BadArgument(format!("cannot read {}: {e}", path.display()))),
        _ => Err(BadArgument(
            "give the message with --data JSON or --data-file FILE".into(),
        )),
    }
}

/// `join` and `leave`: the sessions, and the room.
fn move_body(args: &MoveArgs) -> Result<Value, BadArgument> {
    let mut body = sessions(&args.user, &args.client)?;
    body["room"] = json!(args.room);
    Ok(body)
}

/// `disconnect`: the sessions, the close code and reason. The API closes a user's or a client's
/// sessions only.
fn disconnect_body(args: &DisconnectArgs) -> Result<Value, BadArgument> {
    if args.room.is_some() || args.all {
        return Err(BadArgument(
            "over --edge, disconnect takes --user or --client".into(),
        ));
    }
    let mut body = sessions(&args.user, &args.client)?;
    body["code"] = json!(args.code);
    body["reason"] = json!(args.reason);
    Ok(body)
}

/// The sessions a control request acts on: `{"user":U}` or `{"client":C}`.
fn sessions(user: &Option<String>, client: &Option<String>) -> Result<Value, BadArgument> {
    match (user, client) {
        (Some(user), _) => Ok(json!({ "user": user })),
        (_, Some(client)) => Ok(json!({ "client": client })),
        _ => Err(BadArgument("give --user or --client".into())),
    }
}

/// `presence`: the route for the list or the counts, and the room.
fn presence_path(args: &PresenceArgs) -> String {
    let route = if args.stats {
        "presence_stats"
    } else {
        "presence"
    };
    format!("/api/{route}?room={}", query_escape(&args.room))
}
