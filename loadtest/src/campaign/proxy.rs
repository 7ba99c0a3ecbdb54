//! A TCP proxy the campaign controls, put between an edge and Redis, and between clients and an
//! edge: it passes bytes through, and on command resets every connection it carries, stops
//! passing bytes with no reset at all (a black hole, as a dead switch or a full conntrack table
//! makes), or delays each chunk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the proxy treats the bytes of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through, as they come.
    Pass,
    /// Held: nothing is read or written until the mode changes (connections stay open).
    BlackHole,
    /// Through, each chunk after this delay.
    Latency(Duration),
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    /// The port it listens on, on loopback.
    pub port: u16,
    mode: watch::Sender<Mode>,
    connections: Arc<parking_lot::Mutex<tokio::task::JoinSet<()>>>,
    accept: tokio::task::AbortHandle,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (mode, watching) = watch::channel(Mode::Pass);
        let connections = Arc::new(parking_lot::Mutex::new(tokio::task::JoinSet::new()));
        let accept = {
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let watching = watching.clone();
                    connections.lock().spawn(async move {
                        let _ = carry(client, target, watching).await;
                    });
                }
            })
        };
        Ok(Proxy {
            port,
            mode,
            connections,
            accept: accept.abort_handle(),
        })
    }

    /// Changes how bytes pass, for every connection, open or new.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Resets every open connection (both sides get an RST); new ones are carried as before.
    pub fn reset(&self) {
        self.connections.lock().abort_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.connections.lock().abort_all();
    }
}

/// Carries one connection until either side closes it or it is reset.
async fn carry(
    client: TcpStream,
    target: SocketAddr,
    mode: watch::Receiver<Mode>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(target).await?;
    for stream in [&client, &server] {
        stream.set_nodelay(true)?;
        // Dropped by a reset: an RST, not a FIN, so both sides see the connection torn.
        socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO))?;
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, mode.clone()) => {}
        _ = pump(server_read, client_write, mode) => {}
    }
    Ok(())
}

/// Moves bytes one way, as the mode says, until the reading side ends.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        held(&mut mode).await;
        let n = tokio::select! {
            n = from.read(&mut buffer) => n?,
            // Black-holed while waiting: stop reading at once.
            _ = mode.wait_for(|m| *m == Mode::BlackHole) => continue,
        };
        if n == 0 {
            return Ok(());
        }
        let latency = match *mode.borrow() {
            Mode::Latency(delay) => Some(delay),
            _ => None,
        };
        if let Some(delay) = latency {
            tokio::time::sleep(delay).await;
        }
        // A chunk read just before the hole opened waits for it to close.
        held(&mut mode).await;
        to.write_all(&buffer[..n]).await?;
    }
}

/// Waits while the proxy is a black hole.
async fn held(mode: &mut watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| *m != Mode::BlackHole).await;
}
