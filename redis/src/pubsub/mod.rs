//! The single-Redis bus's live connection, spoken directly rather than through redis-rs: the
//! bus's own task reads the socket and hands each message's payload to the sink straight from
//! the read buffer. redis-rs would read it in a driver task of its own, copy it into a message
//! and pass it through a channel to the bus: a second task woken, and two allocations, per
//! message; and it keeps its own record of every subscribed channel, which the bus's positions
//! already are.
//!
//! Commands (`SUBSCRIBE`, `UNSUBSCRIBE`, `PING`) are written by whoever needs them; their replies
//! arrive among the messages, in command order, and the reader answers each waiting command as
//! its last reply is read. The reader must therefore be running for a command to complete.

mod resp;
mod waiting;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use redis::ConnectionAddr;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::endpoint::Endpoint;
use crate::tls::Tls;
use resp::{Item, Reply};
use waiting::{Waiter, Waiting};

/// How long a command may take to be written and answered.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the pub/sub connection cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PubSubError {
    /// Redis is unreachable, or the connection was lost: connect again.
    #[error("{0}")]
    Unavailable(String),
    /// The settings cannot work (an address or a scheme this reader does not speak).
    #[error("{0}")]
    Refused(String),
}

/// A lost connection, for `e`.
fn unavailable(e: impl std::fmt::Display) -> PubSubError {
    PubSubError::Unavailable(e.to_string())
}

/// Read space kept for the connection (one per edge): a burst of small messages is read and
/// delivered in one go.
const READ_SIZE: usize = 64 * 1024;

/// Most bytes of messages held while connecting and catching up: past it the connection is
/// dropped and made again, as Redis itself drops a subscriber that falls this far behind
/// (`client-output-buffer-limit pubsub`, 32 MB hard by default).
const MAX_HELD: usize = 32 * 1024 * 1024;

/// A message read before the connection's subscriptions were confirmed, kept to be delivered
/// after the catch-up: its channel and payload.
pub type Held = (Bytes, Bytes);

/// How to open the pub/sub connection: where Redis is (an address, or the master a Sentinel
/// group names), its credentials and TLS settings, checked once, when the bus starts.
pub struct Connector {
    endpoint: Endpoint,
    tls: Option<tokio_rustls::TlsConnector>,
    /// The master generation the last connection was made in (see [`Endpoint::generation`]).
    generation: AtomicU64,
}

impl Connector {
    /// A connector for `endpoint`; for `rediss://`, with the certificates of `tls`.
    pub fn new(endpoint: Endpoint, tls: &Tls) -> Result<Connector, PubSubError> {
        let tls = if endpoint.uses_tls() {
            Some(tokio_rustls::TlsConnector::from(
                tls.client_config().map_err(PubSubError::Refused)?,
            ))
        } else {
            None
        };
        Ok(Connector {
            endpoint,
            tls,
            generation: AtomicU64::new(0),
        })
    }

    /// Whether the sentinels now name another master than the one the last connection was made
    /// to: a failover happened, and the connection should be made again. (A demoted master
    /// still relays what the new one publishes, so the connection itself may not notice.)
    /// Always false without Sentinel, or when no sentinel answers.
    pub async fn master_moved(&self) -> bool {
        self.endpoint.refresh_if_due().await;
        self.endpoint.generation() != self.generation.load(Ordering::Acquire)
    }

    /// Opens a connection and authenticates it: TCP, TLS over TCP, or a Unix socket.
    pub async fn connect(&self) -> Result<(Commands, Reader), PubSubError> {
        let client = self.endpoint.client().await.map_err(unavailable)?;
        let info = client.get_connection_info();
        self.generation
            .store(self.endpoint.generation(), Ordering::Release);
        let (read, write): (
            Box<dyn AsyncRead + Send + Unpin>,
            Box<dyn AsyncWrite + Send + Unpin>,
        ) = match (info.addr(), &self.tls) {
            (ConnectionAddr::Tcp(host, port), _) => {
                let stream = tcp(host, *port).await?;
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
            (ConnectionAddr::TcpTls { host, port, .. }, Some(connector)) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| PubSubError::Refused(format!("Redis host {host:?}: {e}")))?;
                let stream = tcp(host, *port).await?;
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| unavailable(format!("TLS with Redis: {e}")))?;
                let (read, write) = tokio::io::split(stream);
                (Box::new(read), Box::new(write))
            }
            (ConnectionAddr::Unix(path), _) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unavailable)?;
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
            _ => {
                return Err(PubSubError::Refused(
                    "the pub/sub connection speaks TCP, TLS over TCP or a Unix socket".into(),
                ));
            }
        };
        let (commands, mut reader) = over(read, write);
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = vec!["AUTH"];
            auth.extend(settings.username());
            auth.push(password);
            let mut held = Vec::new();
            reader.settle(commands.send(&auth, 1), &mut held).await??;
        }
        Ok((commands, reader))
    }
}

async fn tcp(host: &str, port: u16) -> Result<tokio::net::TcpStream, PubSubError> {
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(unavailable)?;
    stream.set_nodelay(true).map_err(unavailable)?;
    Ok(stream)
}

/// The two halves of a connection over `read` and `write`.
fn over(
    read: Box<dyn AsyncRead + Send + Unpin>,
    write: Box<dyn AsyncWrite + Send + Unpin>,
) -> (Commands, Reader) {
    let waiting = Arc::new(Waiting::default());
    let commands = Commands {
        write: tokio::sync::Mutex::new(Some(write)),
        waiting: waiting.clone(),
    };
    let reader = Reader {
        read,
        buf: BytesMut::with_capacity(READ_SIZE),
        waiting,
    };
    (commands, reader)
}

/// The writing half: sends commands and waits for their replies.
pub struct Commands {
    /// `None` once a write failed: the stream may hold half a command.
    write: tokio::sync::Mutex<Option<Box<dyn AsyncWrite + Send + Unpin>>>,
    waiting: Arc<Waiting>,
}

impl Commands {
    /// Subscribes to `channels`; returns once Redis confirmed every one.
    pub async fn subscribe(&self, channels: &[String]) -> Result<(), PubSubError> {
        self.send_with("SUBSCRIBE", channels).await
    }

    /// Unsubscribes from `channels`; returns once Redis confirmed every one.
    pub async fn unsubscribe(&self, channels: &[String]) -> Result<(), PubSubError> {
        self.send_with("UNSUBSCRIBE", channels).await
    }

    /// Asks Redis for an answer, to learn that the connection still works.
    pub async fn ping(&self) -> Result<(), PubSubError> {
        self.send(&["PING"], 1).await
    }

    async fn send_with(&self, command: &str, channels: &[String]) -> Result<(), PubSubError> {
        if channels.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(channels.len() + 1);
        args.push(command);
        args.extend(channels.iter().map(String::as_str));
        // Redis answers these once per channel.
        self.send(&args, channels.len()).await
    }

    /// Writes `args` as one command and waits for its `replies` replies.
    async fn send(&self, args: &[&str], replies: usize) -> Result<(), PubSubError> {
        let mut bytes = Vec::new();
        resp::command(&mut bytes, args);
        let (done, answered) = oneshot::channel();
        {
            let mut write = self.write.lock().await;
            let Some(stream) = write.as_mut() else {
                return Err(unavailable("the pub/sub connection is lost"));
            };
            // Queued before it is written, under the write lock: the queue's order is the
            // order Redis answers in.
            self.waiting.push(Waiter { replies, done })?;
            if !matches!(
                tokio::time::timeout(TIMEOUT, stream.write_all(&bytes)).await,
                Ok(Ok(()))
            ) {
                *write = None;
                self.waiting.close();
                return Err(unavailable("cannot write to the pub/sub connection"));
            }
        }
        match tokio::time::timeout(TIMEOUT, answered).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(PubSubError::Unavailable(format!("Redis refused: {error}"))),
            Ok(Err(_)) => Err(unavailable("the pub/sub connection is lost")),
            Err(_) => Err(unavailable("Redis did not answer in time")),
        }
    }
}

/// The reading half: reads what Redis sends, answers waiting commands and hands messages on.
pub struct Reader {
    read: Box<dyn AsyncRead + Send + Unpin>,
    buf: BytesMut,
    waiting: Arc<Waiting>,
}

impl Reader {
    /// Waits until more bytes have arrived. Cancel-safe.
    pub async fn fill(&mut self) -> Result<(), PubSubError> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        match self.read.read_buf(&mut self.buf).await {
            Ok(0) => Err(unavailable("Redis closed the pub/sub connection")),
            Ok(_) => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Acts on every complete reply read so far: a confirmation answers its command, a
    /// message's channel and payload go to `deliver`.
    pub fn drain(&mut self, mut deliver: impl FnMut(&[u8], &[u8])) -> Result<(), PubSubError> {
        let mut at = 0;
        while let Some((reply, used)) = resp::parse(&self.buf[at..]).map_err(unavailable)? {
            at += used;
            match reply {
                Reply::Array(items) => match items.as_slice() {
                    [
                        Item::Str(Some(b"message")),
                        Item::Str(Some(channel)),
                        Item::Str(Some(payload)),
                    ] => deliver(channel, payload),
                    [Item::Str(Some(b"subscribe" | b"unsubscribe" | b"pong")), ..] => {
                        self.waiting.answer(Ok(()))?
                    }
                    _ => return Err(unavailable("unexpected push on the pub/sub connection")),
                },
                Reply::Status(_) => self.waiting.answer(Ok(()))?,
                Reply::Error(error) => self
                    .waiting
                    .answer(Err(String::from_utf8_lossy(error).into_owned()))?,
                Reply::Int(_) | Reply::Bulk(_) => {
                    return Err(unavailable("unexpected reply on the pub/sub connection"));
                }
            }
        }
        self.buf.advance(at);
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_SIZE {
            // A huge message read once does not keep its space for the connection's life.
            self.buf = BytesMut::with_capacity(READ_SIZE);
        }
        Ok(())
    }

    /// Reads until `work` completes, keeping the messages that arrive meanwhile in `held`
    /// (for when nothing else reads yet: while connecting and catching up), at most
    /// [`MAX_HELD`] bytes of them.
    pub async fn settle<F: Future>(
        &mut self,
        work: F,
        held: &mut Vec<Held>,
    ) -> Result<F::Output, PubSubError> {
        let mut work = std::pin::pin!(work);
        let mut bytes: usize = held.iter().map(|(c, p)| c.len() + p.len()).sum();
        loop {
            tokio::select! {
                output = &mut work => return Ok(output),
                read = self.fill() => {
                    read?;
                    self.drain(|channel, payload| {
                        bytes += channel.len() + payload.len();
                        held.push((Bytes::copy_from_slice(channel), Bytes::copy_from_slice(payload)));
                    })?;
                    if bytes > MAX_HELD {
                        return Err(unavailable("too far behind while catching up"));
                    }
                }
            }
        }
    }
}

impl Drop for Reader {
    /// Nothing will answer the commands still waiting: they fail now, and any sent later at once.
    fn drop(&mut self) {
        self.waiting.close();
    }
}

#[cfg(test)]
mod tests;
