//! Where the connections to one Redis go: a fixed address, or the master a Sentinel group names.

use std::sync::Arc;

use crate::sentinel::Sentinels;

/// Where the connections to one Redis go: a fixed address, or whichever master a Sentinel group
/// names when the connection is made.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// One Redis at the address of its URL (boxed: a client is some hundred bytes, and the
    /// endpoint is cloned into every pool).
    Fixed(Box<redis::Client>),
    /// The master of a Sentinel group.
    Sentinel(Arc<Sentinels>),
}

impl Endpoint {
    /// A client for the Redis to connect to now (for Sentinel: the master named now).
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Endpoint::Fixed(client) => Ok(client.as_ref().clone()),
            Endpoint::Sentinel(sentinels) => sentinels.master().await,
        }
    }

    /// The generation of the master connections go to (see [`Sentinels::generation`]); always
    /// 0 at a fixed address.
    pub fn generation(&self) -> u64 {
        match self {
            Endpoint::Fixed(_) => 0,
            Endpoint::Sentinel(sentinels) => sentinels.generation(),
        }
    }

    /// Behind Sentinel, asks the sentinels again if that is due (see
    /// [`Sentinels::refresh_if_due`]).
    pub async fn refresh_if_due(&self) {
        if let Endpoint::Sentinel(sentinels) = self {
            sentinels.refresh_if_due().await;
        }
    }

    /// Whether a new connection must check that it reached a master (`ROLE`): the sentinels'
    /// answer may be a moment old.
    pub fn checks_role(&self) -> bool {
        matches!(self, Endpoint::Sentinel(_))
    }

    /// Whether connections use TLS.
    pub fn uses_tls(&self) -> bool {
        match self {
            Endpoint::Fixed(client) => matches!(
                client.get_connection_info().addr(),
                redis::ConnectionAddr::TcpTls { .. }
            ),
            Endpoint::Sentinel(sentinels) => sentinels.uses_tls(),
        }
    }
}
