//! The internal listener: `/healthz`, `/readyz` and `/metrics`, on an address of their own.
//!
//! Probes share nothing with the public port (no accept queue, no cap on unauthenticated
//! connections), so thousands of silent client sockets can never make a liveness probe fail and
//! get a healthy pod restarted. It is meant to be reachable from inside the cluster only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::bus::Bus;
use crate::net::http::{self, ReadError};
use crate::ops::metrics::metrics;
use crate::session::Shared;

/// Requests served at once; more wait in the accept queue. Probes and scrapes are a handful.
const CONCURRENT: usize = 64;
/// Longest one request may take, reading it and writing the answer included.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts internal requests until `shutdown` completes.
pub async fn serve<B: Bus>(
    shared: Arc<Shared<B>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(CONCURRENT));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        // A scraper that stops reading must not hold its place for long.
                        let _ = tokio::time::timeout(ANSWER_TIMEOUT, answer(&shared, stream)).await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "internal accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn answer<B: Bus>(shared: &Shared<B>, mut stream: TcpStream) {
    let request = match http::read_request(&mut stream, shared.config.handshake_timeout).await {
        Ok(request) => request,
        Err(ReadError::Gone) => return,
        Err(ReadError::Bad(status)) => {
            http::respond(&mut stream, status, &[], "bad request").await;
            return;
        }
    };
    let (status, body) = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/healthz") => (200, "ok".to_owned()),
        ("GET", "/readyz") => match shared.not_ready() {
            None => (200, "ready".to_owned()),
            Some(why) => (503, format!("not ready: {why}")),
        },
        ("GET", "/metrics") => (200, metrics().render()),
        _ => (404, "not found".to_owned()),
    };
    http::respond(&mut stream, status, &[], &body).await;
}
