//! The internal listener: `/healthz`, `/readyz`, `/metrics` and the HTTP API (PROTOCOL.md
//! part C), on an address of their own.
//!
//! Probes share nothing with the public port (no accept queue, no cap on unauthenticated
//! connections), so thousands of silent client sockets can never make a liveness probe fail and
//! get a healthy pod restarted. It is meant to be reachable from inside the cluster only. HTTP is
//! hyper's; the routes are an axum router ([`api`](super::api)).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::bus::Bus;
use crate::session::Shared;

/// Connections served at once; more wait in the accept queue. Probes, scrapes and API clients
/// are a handful of connections.
const CONCURRENT: usize = 64;
/// Longest a request head may take to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one connection is served: a client that stops reading (or keeps one connection
/// forever) must not hold its place for long.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts internal requests until `shutdown` completes.
pub async fn serve<B: Bus>(
    shared: Arc<Shared<B>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let router = super::api::router(shared);
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
                    let service = TowerToHyperService::new(router.clone());
                    tokio::spawn(async move {
                        let connection = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEAD_TIMEOUT)
                            .max_buf_size(64 * 1024)
                            .serve_connection(TokioIo::new(stream), service);
                        let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
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
