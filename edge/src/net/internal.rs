//! The internal listener: `/healthz`, `/readyz`, `/metrics` and the HTTP API (docs/protocol.md
//! part C), on an address of their own.
//!
//! Probes share nothing with the public port (no accept queue, no cap on unauthenticated
//! connections), so thousands of silent client sockets can never make a liveness probe fail and
//! get a healthy pod restarted. Nor can clients of this listener itself: connections are
//! accepted as they come, never waiting for a place another connection holds; `/healthz` and
//! `/readyz` are answered without taking anything; only the routes that do work (metrics, the
//! API) take one of a bounded number of places, per request ([`api::router`](super::api::router)).
//! What a silent or idle connection can hold is bounded by a short head timeout (which also
//! ends idle keep-alive connections), a cap per peer address and a cap in all, so one pod
//! that opens connections and says nothing cannot crowd out the kubelet. HTTP is hyper's; the
//! routes are an axum router.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::bus::Bus;
use crate::peer::peer_group;
use crate::session::Shared;

/// Connections open at once, in all; more are closed as soon as they are accepted. Each costs a
/// task and hyper's buffers (some KiB).
const MAX_CONNECTIONS: usize = 2048;
/// Connections open at once from one peer address (an IPv6 /64): more than the reviewers' 64
/// silent sockets, far below [`MAX_CONNECTIONS`], so one address never holds every place and the
/// kubelet (whose address no pod has) always gets in.
const MAX_PER_PEER: usize = 128;
/// Longest a request head may take to arrive, and longest a keep-alive connection may sit idle
/// between requests. Probes and scrapers send their request at once.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
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
    let places = Places::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Refused by closing: nothing is read from or written to it.
                    let Some(place) = places.take(peer.ip()) else {
                        continue;
                    };
                    let service = TowerToHyperService::new(router.clone());
                    tokio::spawn(async move {
                        let connection = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEAD_TIMEOUT)
                            .max_buf_size(64 * 1024)
                            .serve_connection(TokioIo::new(stream), service);
                        let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                        drop(place);
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

/// The connections open now: how many in all, and per peer address.
#[derive(Clone, Default)]
struct Places(Arc<Mutex<Counts>>);

#[derive(Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// One connection's place, given back on drop.
struct Place {
    places: Places,
    peer: IpAddr,
}

impl Places {
    /// A place for a connection from `ip`, unless its peer or the listener is at its cap.
    fn take(&self, ip: IpAddr) -> Option<Place> {
        let peer = peer_group(ip);
        let mut counts = self.0.lock();
        if counts.total >= MAX_CONNECTIONS {
            return None;
        }
        let held = counts.per_peer.entry(peer).or_insert(0);
        if *held >= MAX_PER_PEER {
            return None;
        }
        *held += 1;
        counts.total += 1;
        Some(Place {
            places: self.clone(),
            peer,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = self.places.0.lock();
        counts.total -= 1;
        if let Some(held) = counts.per_peer.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                counts.per_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_never_holds_every_place_and_places_come_back() {
        let places = Places::default();
        let attacker: IpAddr = "10.0.0.7".parse().expect("address");
        let held: Vec<_> = (0..MAX_PER_PEER * 2)
            .filter_map(|_| places.take(attacker))
            .collect();
        assert_eq!(held.len(), MAX_PER_PEER);
        // The same host through a dual-stack listener is the same peer.
        assert!(
            places
                .take("::ffff:10.0.0.7".parse().expect("v6"))
                .is_none()
        );
        let kubelet = places.take("10.0.0.1".parse().expect("address"));
        assert!(kubelet.is_some());
        drop(held);
        drop(kubelet);
        assert_eq!(places.0.lock().total, 0);
        assert!(places.0.lock().per_peer.is_empty());
    }
}
