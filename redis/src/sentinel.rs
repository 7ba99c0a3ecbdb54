//! Redis behind Sentinel: one master with replicas, and a group of sentinels that promote a
//! replica when the master fails. The master's address is never configured: it is asked of the
//! sentinels whenever a connection is made, so a connection that broke in a failover is made
//! again to the new master. A connection that finds itself on a replica (a `READONLY` answer, or a
//! `ROLE` that is not `master` when it is made) is dropped and made again the same way: nothing
//! is ever written to a replica.
//!
//! The master is reached with the scheme (`redis://` or `rediss://`), credentials and database
//! of the configured master URL; the sentinels over TLS too when that URL is `rediss://`, with
//! the same certificates, and with their own password.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisResult};

use crate::clients::{self, ClientError};
use crate::tls::Tls;

/// How long asking one sentinel may take before the next is asked.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often connections in use ask whether the master moved (see [`Sentinels::refresh_if_due`]).
/// A demoted master keeps taking writes until Sentinel reconfigures it, and its resync then
/// discards them: the sooner a publisher learns of the new master, the fewer it loses. Asked over
/// a connection kept open to the sentinel, this costs one small round trip.
const REFRESH_EVERY: Duration = Duration::from_millis(250);

/// The Sentinel flags, the same for the edge and the `emitter` command.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct SentinelArgs {
    /// Reach Redis through Sentinel instead of at --redis-url's address: some sentinels of the
    /// group, comma-separated (host:port,host:port,...). The master they name is used (over TLS
    /// if --redis-url is rediss://, with its credentials; its host and port are not used), and
    /// asked again whenever a connection breaks, so a failover is followed.
    #[arg(
        long = "redis-sentinels",
        env = "FERROCAST_REDIS_SENTINELS",
        value_delimiter = ',',
        value_name = "HOST:PORT,...",
        global = true
    )]
    pub sentinels: Vec<String>,
    /// The master's name in the sentinels' configuration (needed with --redis-sentinels).
    #[arg(
        long = "redis-sentinel-master",
        env = "FERROCAST_REDIS_SENTINEL_MASTER",
        value_name = "NAME",
        global = true
    )]
    pub master: Option<String>,
    /// The sentinels' own password (`requirepass` in their configuration), if they have one.
    #[arg(
        long = "redis-sentinel-password",
        env = "FERROCAST_REDIS_SENTINEL_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<String>,
}

/// Settings that cannot reach a master.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    /// Sentinels without a master name, or the reverse.
    #[error("--redis-sentinels and --redis-sentinel-master go together")]
    Incomplete,
    /// A sentinel or master URL that cannot be used.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The master the sentinels named last, and when they were asked.
#[derive(Debug, Default)]
struct Named {
    master: Option<(String, u16)>,
    asked: Option<Instant>,
}

/// A Sentinel group, and how to reach the master it names.
pub struct Sentinels {
    nodes: Vec<redis::Client>,
    /// A connection to each sentinel, kept between questions and made again after one failed.
    links: Vec<parking_lot::Mutex<Option<redis::aio::MultiplexedConnection>>>,
    master: String,
    /// The master's connection settings but for its address.
    template: ConnectionInfo,
    tls: Tls,
    /// The sentinel to ask first: the last one that answered.
    first: AtomicUsize,
    /// The master named last, and when the sentinels were last asked.
    current: parking_lot::Mutex<Named>,
    /// Counts the times the named master changed: a connection made in an older generation
    /// goes to a demoted master and must be made again.
    generation: AtomicU64,
}

impl std::fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinels")
            .field("sentinels", &self.nodes.len())
            .field("master", &self.master)
            .finish()
    }
}

impl SentinelArgs {
    /// The group these flags name, if any; the master is reached with the scheme and
    /// credentials of `master_url` (plain `redis://` without one) and the certificates of `tls`.
    pub fn sentinels(
        &self,
        master_url: Option<&str>,
        tls: &Tls,
    ) -> Result<Option<Sentinels>, SentinelError> {
        let nodes: Vec<&str> = self
            .sentinels
            .iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        match (nodes.is_empty(), &self.master) {
            (true, None) => return Ok(None),
            (false, Some(_)) => {}
            _ => return Err(SentinelError::Incomplete),
        }
        let master_url = master_url.unwrap_or("redis://localhost");
        let secure = clients::uses_tls(master_url)?;
        let template = master_url
            .into_connection_info()
            .map_err(|e| ClientError::Url(e.to_string()))?;
        let scheme = if secure { "rediss" } else { "redis" };
        let auth = self
            .password
            .as_deref()
            .map(|p| format!(":{}@", percent_encode(p)))
            .unwrap_or_default();
        let nodes = nodes
            .iter()
            .map(|node| {
                let node = node.split("://").last().unwrap_or(node);
                clients::client(&format!("{scheme}://{auth}{node}"), tls)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Sentinels {
            links: nodes
                .iter()
                .map(|_| parking_lot::Mutex::new(None))
                .collect(),
            nodes,
            master: self.master.clone().unwrap_or_default(),
            template,
            tls: tls.clone(),
            first: AtomicUsize::new(0),
            current: parking_lot::Mutex::new(Named::default()),
            generation: AtomicU64::new(0),
        }))
    }
}

impl Sentinels {
    /// The master's name.
    pub fn master_name(&self) -> &str {
        &self.master
    }

    /// Whether the master (and the sentinels) are reached over TLS.
    pub fn uses_tls(&self) -> bool {
        matches!(self.template.addr(), ConnectionAddr::TcpTls { .. })
    }

    /// A client for the master the sentinels name now: each sentinel is asked in turn, starting
    /// with the last one that answered.
    pub async fn master(&self) -> RedisResult<redis::Client> {
        let (host, port) = self.master_address().await?;
        let addr = match self.template.addr() {
            ConnectionAddr::TcpTls { .. } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let info = self.template.clone().set_addr(addr);
        if self.tls.is_default() {
            redis::Client::open(info)
        } else {
            redis::Client::build_with_tls(info, self.tls.certificates())
        }
    }

    /// The master's host and port, as the first sentinel that knows says.
    pub async fn master_address(&self) -> RedisResult<(String, u16)> {
        let count = self.nodes.len();
        let first = self.first.load(Ordering::Relaxed);
        let mut last_error = None;
        for i in 0..count {
            let index = (first + i) % count;
            let answer = tokio::time::timeout(ASK_TIMEOUT, self.ask(index)).await;
            if !matches!(answer, Ok(Ok(_))) {
                *self.links[index].lock() = None;
            }
            match answer {
                Ok(Ok(Some(address))) => {
                    self.first.store(index, Ordering::Relaxed);
                    let mut current = self.current.lock();
                    if current
                        .master
                        .as_ref()
                        .is_some_and(|named| *named != address)
                    {
                        self.generation.fetch_add(1, Ordering::AcqRel);
                    }
                    *current = Named {
                        master: Some(address.clone()),
                        asked: Some(Instant::now()),
                    };
                    return Ok(address);
                }
                Ok(Ok(None)) => {
                    last_error = Some(format!("a sentinel does not know master {:?}", self.master));
                }
                Ok(Err(e)) => last_error = Some(e.to_string()),
                Err(_) => last_error = Some("a sentinel did not answer in time".into()),
            }
        }
        Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            format!(
                "no sentinel named the master {:?}: {}",
                self.master,
                last_error.unwrap_or_else(|| "no sentinels".into())
            ),
        )))
    }

    /// Which master generation this is: it changes whenever the sentinels name another master
    /// than before.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Asks the sentinels again if they were last asked [`REFRESH_EVERY`] ago or more, so
    /// connections in use learn of a failover within a quarter of a second even when none of
    /// them breaks (a demoted master keeps its connections for a while and answers them as a
    /// master). Failing to ask changes nothing.
    pub async fn refresh_if_due(&self) {
        {
            let mut current = self.current.lock();
            if current
                .asked
                .is_some_and(|asked| asked.elapsed() < REFRESH_EVERY)
            {
                return;
            }
            // Claimed: the checkouts meanwhile do not all ask at once.
            current.asked = Some(Instant::now());
        }
        let _ = self.master_address().await;
    }

    async fn ask(&self, index: usize) -> RedisResult<Option<(String, u16)>> {
        let link = self.links[index].lock().clone();
        let mut conn = match link {
            Some(conn) => conn,
            None => {
                let conn = self.nodes[index].get_multiplexed_async_connection().await?;
                *self.links[index].lock() = Some(conn.clone());
                conn
            }
        };
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master)
            .query_async(&mut conn)
            .await
    }
}

/// Whether the Redis behind `conn` is a master (`ROLE`): a connection made to an address the
/// sentinels named a moment before a failover may have reached a replica.
pub async fn is_master(conn: &mut impl redis::aio::ConnectionLike) -> RedisResult<bool> {
    let role: redis::Value = redis::cmd("ROLE").query_async(conn).await?;
    Ok(match role {
        redis::Value::Array(items) => matches!(
            items.first(),
            Some(redis::Value::BulkString(b)) if b.as_slice() == b"master"
        ),
        _ => false,
    })
}

/// `text` with the characters a URL's user information cannot hold escaped.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_and_a_master_name_go_together() {
        let none = SentinelArgs::default();
        assert!(matches!(none.sentinels(None, &Tls::default()), Ok(None)));
        let half = SentinelArgs {
            sentinels: vec!["127.0.0.1:26379".into()],
            ..SentinelArgs::default()
        };
        assert!(matches!(
            half.sentinels(None, &Tls::default()),
            Err(SentinelError::Incomplete)
        ));
        let whole = SentinelArgs {
            sentinels: vec!["127.0.0.1:26379".into(), " ".into()],
            master: Some("mymaster".into()),
            password: Some("p@ss word".into()),
        };
        let group = whole
            .sentinels(Some("redis://:secret@ignored:1/2"), &Tls::default())
            .expect("settings")
            .expect("a group");
        assert_eq!(group.nodes.len(), 1);
        assert_eq!(group.master_name(), "mymaster");
        assert_eq!(percent_encode("p@ss word"), "p%40ss%20word");
    }
}
