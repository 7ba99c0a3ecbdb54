//! `campaign`: the delivery contract under every fault this machine can cause (docs/guarantees.md).
//!
//! The campaign starts its own world (a redis-server with an AOF, edges behind proxies it
//! controls), subscribers that resume the way a careful client does, and two publishers (the
//! library and the HTTP API) numbering every message per target. A seeded schedule injects
//! faults, one after another and overlapping; then everything is healed, each publisher sends a
//! last message per target, and the checker reads every subscriber's record against what was
//! acknowledged. Any silent loss, duplicate or reorder fails the run, naming the seed and the
//! first (subscriber, target, sequence) that shows it.

mod checker;
mod faults;
mod proxy;
mod publisher;
mod report;
mod subscriber;
mod world;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrocast_emitter::Emitter;
use tokio::sync::Mutex;

use crate::cli::Common;
use crate::clients::Connector;
use crate::report::Report;
use faults::Fault;
pub(crate) use faults::Rng;
use publisher::Target;
use subscriber::{Seen, Subscriber};
use world::{Edge, Redis};

/// Rooms every subscriber joins: two the library publishes to, one the HTTP API does.
const LIBRARY_ROOMS: [&str; 2] = ["lib0", "lib1"];
const API_ROOM: &str = "api0";
/// Users the subscribers are spread over (each user's messages reach all of its connections).
const USERS: usize = 2;

/// A campaign's settings.
pub struct Campaign {
    pub seed: u64,
    pub duration: Duration,
    pub edges: usize,
    pub subscribers: usize,
    pub every: Duration,
    pub edge_binary: Option<PathBuf>,
    /// Kinds of fault to draw from, by name (empty: all).
    pub only: Vec<String>,
}

/// A fault as injected: what, where, and when it began (Unix ms).
struct Injected {
    fault: Fault,
    started_ms: u64,
}

pub async fn run(common: &Common, campaign: Campaign) -> anyhow::Result<Report> {
    let binary = match &campaign.edge_binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the loadtest binary's folder")?
            .join("edge"),
    };
    let dir = std::env::temp_dir().join(format!("ferrocast-campaign-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(common, &campaign, &binary, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(
    common: &Common,
    campaign: &Campaign,
    binary: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<Report> {
    let world = World::start(binary, dir, campaign.edges.max(1)).await?;
    let audience = Audience::join(common, campaign.subscribers.max(1), &world.client_ports).await?;
    let publishers = Publishers::start(&world)?;
    let injected = inject_faults(campaign, &world).await?;
    heal(&world.redis, &world.edges).await?;
    let finished = publishers.finish(&world, &audience).await?;
    audience.stop();
    report::judge(common, campaign, &world, &audience, &injected, finished)
}

/// The world a campaign runs in: one Redis and its edges, each behind the proxies the faults
/// control.
struct World {
    redis: Arc<Mutex<Redis>>,
    redis_url: String,
    edges: Arc<Vec<Mutex<Edge>>>,
    client_ports: Vec<u16>,
    internal_ports: Vec<u16>,
}

impl World {
    async fn start(
        binary: &std::path::Path,
        dir: &std::path::Path,
        edges: usize,
    ) -> anyhow::Result<World> {
        let redis = Redis::start(dir).await?;
        let redis_url = format!("redis://127.0.0.1:{}", redis.port);
        let mut started = Vec::new();
        for _ in 0..edges {
            started.push(Edge::start(binary, redis.port).await?);
        }
        Ok(World {
            redis_url,
            client_ports: started.iter().map(|e| e.client_port).collect(),
            internal_ports: started.iter().map(|e| e.internal_port).collect(),
            redis: Arc::new(Mutex::new(redis)),
            edges: Arc::new(started.into_iter().map(Mutex::new).collect()),
        })
    }
}

/// The subscribers, each in every target, and what each has seen.
struct Audience {
    /// Each subscriber's name and record.
    seens: Vec<(String, Arc<parking_lot::Mutex<Seen>>)>,
    /// The targets each follows.
    follows: Vec<Vec<String>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Audience {
    /// Starts `count` subscribers, spread over the edges, and waits until every one is in every
    /// target: nothing is published before.
    async fn join(common: &Common, count: usize, ports: &[u16]) -> anyhow::Result<Audience> {
        let connector = Connector::new(common);
        let mut rooms: Vec<String> = LIBRARY_ROOMS.iter().map(|r| r.to_string()).collect();
        rooms.push(API_ROOM.to_owned());
        let room_refs: Vec<&str> = rooms.iter().map(String::as_str).collect();
        let mut audience = Audience {
            seens: Vec::new(),
            follows: Vec::new(),
            tasks: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        for i in 0..count {
            let user = format!("u{}", i % USERS);
            let name = format!("{user}/s{i}");
            let seen = Arc::new(parking_lot::Mutex::new(Seen::default()));
            audience.seens.push((name.clone(), seen.clone()));
            let subscriber = Subscriber {
                name,
                token: connector.token(&user, &room_refs)?,
                rooms: rooms.clone(),
                ports: ports.to_vec(),
                first: i,
                seen,
                stop: audience.stop.clone(),
            };
            audience.follows.push(subscriber.targets());
            audience.tasks.push(tokio::spawn(subscriber.run()));
        }
        let seens = &audience.seens;
        wait_for("every subscriber to join", Duration::from_secs(30), || {
            seens.iter().all(|(_, seen)| seen.lock().ready)
        })
        .await?;
        Ok(audience)
    }

    /// Whether every subscriber has seen the last message of each target it follows.
    fn saw_the_ends(&self, ends: &BTreeMap<String, u64>) -> bool {
        self.seens
            .iter()
            .zip(&self.follows)
            .all(|((_, seen), targets)| {
                let seen = seen.lock();
                targets.iter().all(|target| {
                    ends.get(target)
                        .is_some_and(|end| seen.highest.get(target).is_some_and(|h| h >= end))
                })
            })
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The two publishers, numbering every message per target, and the switch that stops them.
struct Publishers {
    library: tokio::task::JoinHandle<publisher::Library>,
    api: tokio::task::JoinHandle<publisher::Api>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// What the publishers were told was stored, and the last message of each target.
struct Finished {
    library: publisher::Acked,
    api: publisher::Acked,
    ends: BTreeMap<String, u64>,
    /// Whether every subscriber saw every last message.
    drained: anyhow::Result<()>,
}

impl Publishers {
    /// The library publishing to its rooms, every user and everyone; the HTTP API to its room.
    fn start(world: &World) -> anyhow::Result<Publishers> {
        let emitter = Emitter::builder(&world.redis_url)
            .retries(3, Duration::from_millis(50))
            .connect_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(2))
            .build()?;
        let mut targets: Vec<Target> = LIBRARY_ROOMS
            .iter()
            .map(|r| Target::Room(r.to_string()))
            .collect();
        targets.extend((0..USERS).map(|u| Target::User(format!("u{u}"))));
        targets.push(Target::All);
        let (stop, publishing) = tokio::sync::watch::channel(false);
        let library = tokio::spawn(
            publisher::Library::new(emitter, targets)
                .run(Duration::from_millis(10), publishing.clone()),
        );
        let api = tokio::spawn(
            publisher::Api::new(API_ROOM.to_owned(), world.internal_ports.clone())
                .run(Duration::from_millis(50), publishing),
        );
        Ok(Publishers { library, api, stop })
    }

    /// Stops publishing, then sends a last message to every target until every subscriber has
    /// seen the last of each: one published while an edge was still catching up may fall
    /// inside its announced gap.
    async fn finish(self, world: &World, audience: &Audience) -> anyhow::Result<Finished> {
        self.stop.send_replace(true);
        let mut library = self.library.await?;
        let mut api = self.api.await?;
        for &port in &world.internal_ports {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !world::ready(port).await && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut ends: BTreeMap<String, u64> = BTreeMap::new();
        let mut drained = Err(anyhow::anyhow!("no last message was acknowledged"));
        for _ in 0..10 {
            ends.extend(library.end_round().await);
            ends.extend(api.end_round().await);
            drained = wait_for(
                "every subscriber to see the last messages",
                Duration::from_secs(5),
                || audience.saw_the_ends(&ends),
            )
            .await;
            if drained.is_ok() {
                break;
            }
        }
        Ok(Finished {
            library: library.acked,
            api: api.acked,
            ends,
            drained,
        })
    }
}

/// Injects faults until the campaign's duration is up, drawn as from a shuffled deck, dealt
/// again when empty: every kind comes up once in each round of the deck, however short the
/// campaign. Returns once every fault has run its course.
async fn inject_faults(campaign: &Campaign, world: &World) -> anyhow::Result<Vec<Injected>> {
    let kinds: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| campaign.only.is_empty() || campaign.only.iter().any(|o| o == f.name()))
        .collect();
    if kinds.is_empty() {
        bail!(
            "--only names no fault: choose among {:?}",
            Fault::ALL.map(Fault::name)
        );
    }
    let mut rng = Rng::new(campaign.seed);
    let mut deck: Vec<Fault> = Vec::new();
    let started = Instant::now();
    let mut injected = Vec::new();
    let mut running = tokio::task::JoinSet::new();
    while started.elapsed() < campaign.duration {
        let every = campaign.every.as_millis() as u64;
        tokio::time::sleep(rng.between_ms(every / 2, every * 3 / 2)).await;
        if deck.is_empty() {
            deck = kinds.clone();
            for i in (1..deck.len()).rev() {
                deck.swap(i, rng.below(i + 1));
            }
        }
        let Some(fault) = deck.pop() else { break };
        let edge = rng.below(world.edges.len());
        let mut fault_rng = rng.fork();
        injected.push(Injected {
            fault,
            started_ms: ferrocast_protocol::envelope::now_ms(),
        });
        let (redis, edges) = (world.redis.clone(), world.edges.clone());
        running.spawn(async move {
            let result = if fault.hits_redis() {
                fault
                    .on_redis(&mut *redis.lock().await, &mut fault_rng)
                    .await
            } else {
                fault
                    .on_edge(&mut *edges[edge].lock().await, &mut fault_rng)
                    .await
            };
            if let Err(error) = result {
                eprintln!("{} on edge {edge}: {error:#}", fault.name());
            }
        });
    }
    while running.join_next().await.is_some() {}
    Ok(injected)
}

/// Brings every part back: Redis and every edge running, every link passing bytes.
async fn heal(redis: &Mutex<Redis>, edges: &[Mutex<Edge>]) -> anyhow::Result<()> {
    redis.lock().await.ensure_running().await?;
    for edge in edges {
        let mut edge = edge.lock().await;
        edge.redis_link.set(proxy::Mode::Pass);
        edge.client_link.set(proxy::Mode::Pass);
        edge.signal("-CONT").await;
        edge.ensure_running().await?;
    }
    Ok(())
}

async fn wait_for(
    what: &str,
    within: Duration,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !condition() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
