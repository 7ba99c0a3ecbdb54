//! A subscriber as a careful application writes one: it keeps the last offset of every target,
//! and whenever its connection ends (or goes silent) it connects again, to the next edge, and
//! resumes each target from there. It records, per target, every message and every
//! announcement that messages may be missing, for the checker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::checker::{Cause, Event, Record};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long without any frame before the subscriber pings, and then gives up on the connection.
const SILENCE: Duration = Duration::from_secs(3);

/// What a subscriber saw, shared with the campaign while it runs.
#[derive(Default)]
pub struct Seen {
    /// Per target: the events, and the arrival time (Unix ms) and publish time of each message.
    pub events: BTreeMap<String, Vec<Event>>,
    pub arrivals: Vec<(u64, u64)>,
    /// Whether it has joined every target once.
    pub ready: bool,
    /// Per target, the highest sequence number that arrived.
    pub highest: BTreeMap<String, u64>,
    pub reconnects: u64,
}

/// One subscriber.
pub struct Subscriber {
    pub name: String,
    pub token: String,
    pub rooms: Vec<String>,
    /// The clients' ports of the edges, tried in turn from `first`.
    pub ports: Vec<u16>,
    pub first: usize,
    pub seen: Arc<parking_lot::Mutex<Seen>>,
    pub stop: Arc<AtomicBool>,
}

impl Subscriber {
    /// Connects, resumes and reads, again and again, until `stop`.
    pub async fn run(self) {
        let mut offsets: BTreeMap<String, String> = BTreeMap::new();
        let mut attempt = self.first;
        let mut backoff = Duration::from_millis(50);
        while !self.stop.load(Ordering::Relaxed) {
            let port = self.ports[attempt % self.ports.len()];
            attempt += 1;
            match self.session(port, &mut offsets).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            self.seen.lock().reconnects += 1;
        }
    }

    /// One connection: authenticate and resume, join and resume, read until it ends.
    async fn session(
        &self,
        port: u16,
        offsets: &mut BTreeMap<String, String>,
    ) -> anyhow::Result<()> {
        let url = format!("ws://127.0.0.1:{port}/ws");
        let (mut ws, _) =
            tokio::time::timeout(SILENCE, tokio_tungstenite::connect_async(&url)).await??;
        let mut since = serde_json::Map::new();
        for (scope, target) in [("user", self.user_target()), ("all", "all".to_owned())] {
            if let Some(offset) = offsets.get(&target) {
                since.insert(scope.into(), json!(offset));
            }
        }
        send(
            &mut ws,
            json!({"type": "auth", "token": self.token, "since": since}),
        )
        .await?;
        let welcome = next(&mut ws).await?;
        if welcome["type"] != "welcome" {
            bail!("no welcome: {welcome}");
        }
        for (scope, target) in [("user", self.user_target()), ("all", "all".to_owned())] {
            if offsets.contains_key(&target) && welcome["recovered"][scope] != true {
                self.announce(&target, Cause::NotRecovered);
            }
        }
        for room in &self.rooms {
            let target = format!("room:{room}");
            let mut join = json!({"type": "join", "room": room});
            if let Some(since) = offsets.get(&target) {
                join["since"] = json!(since);
            }
            send(&mut ws, join).await?;
            // Messages of targets joined before may come first. A refusal (Redis unreachable:
            // `UNAVAILABLE`) ends this connection; the next one tries again.
            loop {
                let frame = tokio::time::timeout(SILENCE, next(&mut ws)).await??;
                if frame["type"] == "error" {
                    bail!("join refused: {frame}");
                }
                if frame["type"] == "joined" && frame["room"] == json!(room) {
                    if offsets.contains_key(&target) && frame["recovered"] != true {
                        self.announce(&target, Cause::NotRecovered);
                    }
                    break;
                }
                self.take(&frame, offsets);
            }
        }
        self.seen.lock().ready = true;
        let mut pinged = false;
        while !self.stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(SILENCE, next(&mut ws)).await {
                Ok(frame) => {
                    self.take(&frame?, offsets);
                    pinged = false;
                }
                // Silent: the edge may be paused or cut off. Ask once, then give up on it.
                Err(_) if !pinged => {
                    send(&mut ws, json!({"type": "ping"})).await?;
                    pinged = true;
                }
                Err(_) => bail!("silent"),
            }
        }
        Ok(())
    }

    /// The targets it follows.
    pub fn targets(&self) -> Vec<String> {
        let mut targets: Vec<String> = self.rooms.iter().map(|r| format!("room:{r}")).collect();
        targets.push(self.user_target());
        targets.push("all".to_owned());
        targets
    }

    fn user_target(&self) -> String {
        format!("user:{}", self.name.split('/').next().unwrap_or_default())
    }

    fn announce(&self, target: &str, cause: Cause) {
        self.seen
            .lock()
            .events
            .entry(target.to_owned())
            .or_default()
            .push(Event::Announced(cause));
    }

    /// Records a frame: a message (and its offset), or a gap.
    fn take(&self, frame: &Value, offsets: &mut BTreeMap<String, String>) {
        let target = match frame["scope"].as_str() {
            Some("room") => format!("room:{}", frame["room"].as_str().unwrap_or_default()),
            Some("user") => self.user_target(),
            Some("all") => "all".to_owned(),
            _ => return,
        };
        match frame["type"].as_str() {
            Some("msg") => {
                let Some(seq) = frame["data"]["seq"].as_u64() else {
                    return;
                };
                if let Some(offset) = frame["offset"].as_str() {
                    offsets.insert(target.clone(), offset.to_owned());
                }
                let mut seen = self.seen.lock();
                let published = frame["data"]["t"].as_u64().unwrap_or_default();
                seen.arrivals
                    .push((ferrocast_protocol::envelope::now_ms(), published));
                let highest = seen.highest.entry(target.clone()).or_default();
                *highest = (*highest).max(seq);
                seen.events.entry(target).or_default().push(Event::Msg(seq));
            }
            Some("gap") => {
                if let Some(offset) = frame["offset"].as_str() {
                    offsets.insert(target.clone(), offset.to_owned());
                }
                self.announce(&target, Cause::Gap);
            }
            _ => {}
        }
    }

    /// The records of the targets it follows, for the checker: one for each, even a target of
    /// which nothing arrived (whose every acknowledged message is then missing).
    pub fn records(name: &str, targets: &[String], seen: &Seen) -> Vec<Record> {
        targets
            .iter()
            .map(|target| Record {
                subscriber: name.to_owned(),
                target: target.clone(),
                events: seen.events.get(target).cloned().unwrap_or_default(),
            })
            .collect()
    }
}

async fn send(ws: &mut Ws, frame: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(frame.to_string().into())).await?;
    Ok(())
}

async fn next(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
            Some(Ok(Message::Close(_))) | None => bail!("closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}
