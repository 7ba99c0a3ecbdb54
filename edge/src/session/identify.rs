//! Who a connection is: its token checked by the JWT verifier or, with `--connect-hook`, by the
//! application. The same path serves the `Authorization` header, the `auth` frame and `refresh`.

use std::net::IpAddr;
use std::sync::Arc;

use crate::bus::Bus;
use crate::hooks::connect::{self, ConnectRequest, HookClaims, Verdict};
use crate::session::Shared;
use crate::session::auth::{Claims, Patterns, Verified};

/// The `exp` of a connection whose connect hook gave none: never, as far as anyone alive cares
/// (2106), and far from any overflow when leeway is added.
const NO_EXPIRY: u64 = u32::MAX as u64;

/// Where a connection comes from, known before it authenticates.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its client id, chosen by the edge.
    pub client: Arc<str>,
    /// Its IP address.
    pub remote: IpAddr,
    /// The upgrade request's `Origin`.
    pub origin: Option<String>,
}

/// Why a token did not get a connection in.
#[derive(Debug)]
pub enum Denied {
    /// The token is no good: 4001 (HTTP 401 on the upgrade). `label` is the metric's reason.
    Refused {
        /// The `auth_failures` label.
        label: &'static str,
        /// Safe to show the client and to log (never the token).
        message: String,
    },
    /// The connect hook gave no usable answer: 1013 (HTTP 503 on the upgrade), try later.
    Unavailable(String),
}

impl<B: Bus> Shared<B> {
    /// Checks `token` of the connection `peer`.
    pub async fn identify(&self, token: &str, peer: &Peer) -> Result<Verified, Denied> {
        let Some(url) = self.hooks.connect.as_deref() else {
            return self.verifier.verify(token).map_err(|e| Denied::Refused {
                label: e.reason(),
                message: e.to_string(),
            });
        };
        let request = ConnectRequest {
            token,
            client: &peer.client,
            node: &self.node_id,
            remote: peer.remote,
            origin: peer.origin.as_deref(),
        };
        match connect::decide(&self.hooks.client, url, &request).await {
            // An `exp` already past is an expired token, whoever says so.
            Verdict::Accept(claims)
                if claims.exp.is_some_and(|exp| {
                    exp.saturating_add(self.config.jwt_leeway.as_secs())
                        < ferrocast_protocol::envelope::now_ms() / 1000
                }) =>
            {
                Err(Denied::Refused {
                    label: "token_expired",
                    message: "the connect hook's exp is past".into(),
                })
            }
            Verdict::Accept(claims) => Ok(claims_of(claims)),
            Verdict::Refuse => Err(Denied::Refused {
                label: "hook_refused",
                message: "the application refused the token".into(),
            }),
            Verdict::Unavailable(why) => {
                tracing::warn!(%why, "connect hook unavailable");
                Err(Denied::Unavailable(why))
            }
        }
    }
}

fn claims_of(hook: HookClaims) -> Verified {
    let claims = Claims {
        sub: hook.user,
        exp: hook.exp.unwrap_or(NO_EXPIRY),
        rooms: Patterns::from(hook.rooms),
        publish: Patterns::from(hook.publish),
        send: hook.send.map(Patterns::from),
        meta: hook.meta.map(Box::new),
        info: hook.info.map(Box::new),
    };
    Verified {
        claims,
        enc: hook.enc,
    }
}
