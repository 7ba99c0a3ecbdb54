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

/// Numbered traffic in one room: followers that resume through anything, and a paced publisher.
pub struct Traffic {
    emitter: Emitter,
    room: &'static str,
    followers: Vec<tokio::task::JoinHandle<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    publishing: tokio::task::JoinHandle<()>,
}

impl Traffic {
    /// Starts one follower per entry of `urls` (the edges each may use), waits until all have
    /// joined, then starts publishing every `pause`.
    pub async fn start(
        emitter: Emitter,
        room: &'static str,
        urls: Vec<Urls>,
        pause: Duration,
    ) -> Traffic {
        let joined = Arc::new(AtomicU64::new(0));
        let expected = urls.len() as u64;
        let followers = urls
            .into_iter()
            .enumerate()
            .map(|(i, urls)| {
                let joined = joined.clone();
                tokio::spawn(
                    async move { follow(urls, room, &format!("{room}-f{i}"), joined).await },
                )
            })
            .collect();
        // Publishing starts once every follower is in, so each must see message 0.
        crate::eventually("followers to join", || {
            joined.load(Ordering::SeqCst) == expected
        })
        .await;
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let publishing = publisher(
            emitter.clone(),
            room,
            Some(pause),
            stop.clone(),
            count.clone(),
        );
        Traffic {
            emitter,
            room,
            followers,
            stop,
            count,
            publishing,
        }
    }

    /// Waits until `more` messages have been published from now on.
    pub async fn go_on(&self, more: u64) {
        let target = self.count.load(Ordering::SeqCst) + more;
        crate::eventually("publishing to go on", || {
            self.count.load(Ordering::SeqCst) >= target
        })
        .await;
    }

    /// Stops publishing, tells the followers the end, and checks each saw every number exactly
    /// once, in order.
    pub async fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.publishing.await.expect("publisher");
        self.emitter
            .to_room(self.room)
            .emit("n", &json!("end"))
            .await
            .expect("emit");
        let total = self.count.load(Ordering::SeqCst);
        for follower in self.followers {
            let seen = follower.await.expect("follower");
            if seen != (0..total).collect::<Vec<_>>() {
                let repeated = seen.windows(2).filter(|w| w[0] >= w[1]).count();
                panic!(
                    "saw {} messages ({repeated} repeated or out of order), expected 0..{total}",
                    seen.len()
                );
            }
        }
    }
}
