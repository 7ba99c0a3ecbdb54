//! The network side: the public listener (WebSocket upgrades only), the internal one (probes,
//! metrics) and the small HTTP reader both use. An upgraded connection is handed to
//! [`session`](crate::session).

pub mod api;
mod console;
pub mod http;
pub mod internal;
pub mod listener;
