//! Numbered traffic for failure tests: a publisher of consecutive numbers, and followers that
//! reconnect and resume through whatever happens, recording every number they see.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrocast_emitter::Emitter;
use serde_json::json;

use crate::{Client, Token};

/// The edges a follower may connect to; tests change it as edges come and go.
#[derive(Clone, Default)]
pub struct Urls(Arc<Mutex<Vec<String>>>);

impl Urls {
    /// A list holding `urls`.
    pub fn new(urls: Vec<String>) -> Urls {
        Urls(Arc::new(Mutex::new(urls)))
    }

    /// Adds an edge.
    pub fn add(&self, url: String) {
        self.0.lock().expect("urls").push(url);
    }

    /// Removes an edge.
    pub fn remove(&self, url: &str) {
        self.0.lock().expect("urls").retain(|u| u != url);
    }

    fn pick(&self, attempt: usize) -> Option<String> {
        let urls = self.0.lock().expect("urls");
        (!urls.is_empty()).then(|| urls[attempt % urls.len()].clone())
    }
}

fn token(sub: &str) -> String {
    Token::user(sub, &["r", "room:*"]).dev()
}

/// Publishes numbered messages to `room` until `stop`, as fast as one publisher goes (or every
/// `pause`). Any retrying is the emitter's own, which resends the same message id.
pub fn publisher(
    emitter: Emitter,
    room: &'static str,
    pause: Option<Duration>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = emitter.to_room(room).emit("n", &json!(n)).await {
                panic!("publish {n} failed: {e}");
            }
            n += 1;
            count.store(n, Ordering::SeqCst);
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
        }
    })
}

/// A client that follows numbered messages in `room` until the string "end", reconnecting
/// (going round `urls`) and resuming whenever its connection ends.
pub async fn follow(urls: Urls, room: &str, sub: &str, joined: Arc<AtomicU64>) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    let mut attempt = 0usize;
    loop {
        let Some(url) = urls.pick(attempt) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        attempt += 1;
        let Ok((mut client, _)) = Client::open(&url, Some(&token(sub)), &[]).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if client.next().await.is_none_or(|w| w["type"] != "welcome") {
            continue;
        }
        let mut frame = json!({"type": "join", "room": room});
        if let Some(since) = &last {
            frame["since"] = json!(since);
        }
        client.send(frame).await;
        while let Some(frame) = client.next().await {
            match frame["type"].as_str() {
                Some("joined") if last.is_some() => {
                    assert_eq!(frame["recovered"], true, "resume lost history: {frame}");
                }
                Some("joined") => {
                    joined.fetch_add(1, Ordering::SeqCst);
                }
                Some("msg") if frame["data"] == "end" => return seen,
                Some("msg") => {
                    seen.push(frame["data"].as_u64().expect("n"));
                    last = frame["offset"].as_str().map(str::to_owned);
                }
                Some("error") => break,
                _ => {}
            }
        }
    }
}
