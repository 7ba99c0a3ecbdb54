//! The campaign's publishers: the emitter library straight to Redis, and the HTTP API of
//! whichever edge answers. Each owns its targets and numbers their messages 0, 1, 2, ... in the
//! order it publishes them (one at a time per target), so the checker knows the order every
//! subscriber must see; it keeps what was acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferrocast_emitter::Emitter;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The dev API key of an edge with no `--api-key`.
const API_KEY: &str = "ferrocast-dev-api-key";

/// A target of the library publisher, named as the subscribers' records name it.
#[derive(Debug, Clone)]
pub enum Target {
    Room(String),
    User(String),
    All,
}

impl Target {
    /// `room:R`, `user:U` or `all`.
    pub fn key(&self) -> String {
        match self {
            Target::Room(room) => format!("room:{room}"),
            Target::User(user) => format!("user:{user}"),
            Target::All => "all".to_owned(),
        }
    }
}

/// What a publisher was told was stored: per target, the sequence numbers; and how many
/// publishes it tried.
#[derive(Default, Debug)]
pub struct Acked {
    pub seqs: BTreeMap<String, BTreeSet<u64>>,
    pub tried: u64,
}

/// A message's data: its sequence number and publish time, and whether it is a last one.
fn data(seq: u64, end: bool) -> serde_json::Value {
    json!({"seq": seq, "t": ferrocast_protocol::envelope::now_ms(), "end": end})
}

/// Publishes through the emitter library, straight to Redis.
pub struct Library {
    emitter: Emitter,
    targets: Vec<Target>,
    next: Vec<u64>,
    pub acked: Acked,
}

impl Library {
    /// A publisher to `targets`.
    pub fn new(emitter: Emitter, targets: Vec<Target>) -> Library {
        Library {
            emitter,
            next: vec![0; targets.len()],
            targets,
            acked: Acked::default(),
        }
    }

    /// Publishes to the targets in turn, one every `every`, until `stop`.
    pub async fn run(
        mut self,
        every: Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Library {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for i in (0..self.targets.len()).cycle() {
            if *stop.borrow() {
                break;
            }
            tick.tick().await;
            self.publish(i, false).await;
        }
        self
    }

    /// Publishes a last message to every target, each retried for a while; returns the
    /// sequence numbers of those acknowledged, by target.
    pub async fn end_round(&mut self) -> Vec<(String, u64)> {
        let mut ends = Vec::new();
        for i in 0..self.targets.len() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while tokio::time::Instant::now() < deadline {
                if let Some(seq) = self.publish(i, true).await {
                    ends.push((self.targets[i].key(), seq));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        ends
    }

    /// Publishes the next message of target `i`; its sequence number if acknowledged.
    async fn publish(&mut self, i: usize, end: bool) -> Option<u64> {
        let seq = self.next[i];
        self.next[i] += 1;
        self.acked.tried += 1;
        let target = &self.targets[i];
        let publication = match target {
            Target::Room(room) => self.emitter.to_room(room),
            Target::User(user) => self.emitter.to_user(user),
            Target::All => self.emitter.broadcast(),
        };
        let message = publication
            .message_raw("seq", data(seq, end).to_string().into_bytes())
            .ok()?;
        self.emitter.publish(&message).await.ok()?;
        self.acked.seqs.entry(target.key()).or_default().insert(seq);
        Some(seq)
    }
}

/// Publishes to one room through the HTTP API of whichever edge answers: each message with its
/// own id, retried with it on the next edge (a few times) when refused, as an API client should.
pub struct Api {
    room: String,
    internal_ports: Vec<u16>,
    edge: usize,
    next: u64,
    pub acked: Acked,
}

impl Api {
    /// A publisher to `room` through the edges with these internal ports.
    pub fn new(room: String, internal_ports: Vec<u16>) -> Api {
        Api {
            room,
            internal_ports,
            edge: 0,
            next: 0,
            acked: Acked::default(),
        }
    }

    /// Publishes one message every `every` until `stop`.
    pub async fn run(mut self, every: Duration, stop: tokio::sync::watch::Receiver<bool>) -> Api {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*stop.borrow() {
            tick.tick().await;
            self.publish(false, 3).await;
        }
        self
    }

    /// Publishes a last message, tried on every edge in turn; its target and sequence number if
    /// acknowledged.
    pub async fn end_round(&mut self) -> Option<(String, u64)> {
        let seq = self.publish(true, 30).await?;
        Some((format!("room:{}", self.room), seq))
    }

    async fn publish(&mut self, end: bool, attempts: u32) -> Option<u64> {
        let seq = self.next;
        self.next += 1;
        self.acked.tried += 1;
        let id = format!("00000000-0000-4000-8000-{seq:012}");
        let body = json!({"room": self.room, "event": "seq", "data": data(seq, end), "id": id});
        for _ in 0..attempts {
            let port = self.internal_ports[self.edge % self.internal_ports.len()];
            if post(port, &body.to_string()).await {
                let target = format!("room:{}", self.room);
                self.acked.seqs.entry(target).or_default().insert(seq);
                return Some(seq);
            }
            self.edge += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// `POST /api/publish`; whether it answered 200 within 3 s.
async fn post(port: u16, body: &str) -> bool {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request = format!(
            "POST /api/publish HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
             authorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
