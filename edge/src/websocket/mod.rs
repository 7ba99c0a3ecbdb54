//! The edge's own WebSocket frame path (RFC 6455, and permessage-deflate, RFC 7692), used after
//! the handshake for every client connection: [`frame`] reads and writes frame headers,
//! [`deflate`] negotiates and applies compression, [`wire`] builds a publication's frames once
//! for all its recipients, [`socket`] lets the fan-out write them straight to an idle
//! connection, [`sealed`] builds an encrypted connection's frames, each for it alone, [`conn`]
//! is a connection.

pub mod conn;
pub mod deflate;
pub mod frame;
pub mod iovec;
mod pending;
pub mod sealed;
pub mod socket;
pub mod wire;

pub use conn::{Read, WsConn, WsError};
