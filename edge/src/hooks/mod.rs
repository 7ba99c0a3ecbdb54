//! Back-end hooks (docs/protocol.md, part 4): decisions and events that belong to the
//! application rather than to a token. The [`connect`] hook authenticates any credential, the
//! [`join`] hook decides joins the claims do not cover, and [`lifecycle`] events tell workers
//! who connected, left or moved, through the inbox. Every request goes through one
//! [`client`]: signed, timed out, bounded, traced and counted.

pub mod client;
pub mod connect;
pub mod join;
pub mod lifecycle;

use crate::config::patterns::Patterns;
use crate::config::{Config, HookConfig};
use client::HookClient;
use lifecycle::LifecycleEvents;

/// The hooks an edge is configured with.
pub struct Hooks {
    /// Sends every hook request.
    pub client: HookClient,
    /// The connect hook's URL.
    pub connect: Option<String>,
    /// The join hook's URL.
    pub join: Option<String>,
    join_rooms: Patterns,
    /// Where sessions report lifecycle events, when some are wanted.
    pub lifecycle: Option<LifecycleEvents>,
}

impl Hooks {
    /// The hooks of `config`, for edge `node`; with lifecycle events, the receiver their task
    /// ([`lifecycle::run`]) appends from. Fails if --hook-ca-file cannot be used.
    #[allow(clippy::type_complexity)]
    pub fn new(
        config: &Config,
        node: &str,
    ) -> Result<
        (
            Hooks,
            Option<tokio::sync::mpsc::Receiver<ferrocast_protocol::Upstream>>,
        ),
        String,
    > {
        let hooks: &HookConfig = &config.hooks;
        let (lifecycle, rx) = if hooks.upstream_lifecycle.is_empty() {
            (None, None)
        } else {
            let (events, rx) = LifecycleEvents::new(&hooks.upstream_lifecycle, node);
            (Some(events), Some(rx))
        };
        Ok((
            Hooks {
                // Behind a proxy (no per-address cap), every client shares one address.
                client: HookClient::new(hooks, config.pending_per_ip() != 0)?,
                connect: hooks.connect_hook.clone(),
                join: hooks.join_hook.clone(),
                join_rooms: Patterns::from(hooks.join_hook_rooms.clone()),
                lifecycle,
            },
            rx,
        ))
    }

    /// The join hook's URL, if it decides joins of `room`.
    pub fn join_hook_for(&self, room: &str) -> Option<&str> {
        self.join
            .as_deref()
            .filter(|_| self.join_rooms.allows(room))
    }
}
