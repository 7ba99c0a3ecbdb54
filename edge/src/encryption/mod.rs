//! Payload encryption per connection (PROTOCOL.md part E): an ephemeral ECDH P-256 agreement
//! with the client ([`agreement`]), and the connection's [`Channel`], which seals what the edge
//! sends and opens what the client sends as `enc` frames, each direction with its own counter.
//!
//! Only RustCrypto's audited primitives do the cryptography (p256, hkdf, sha2, aes-gcm). The
//! frame path ([`crate::websocket`]) applies a channel where each connection's frames get their
//! final order, so counters go out in the order the client reads them.

pub mod agreement;
mod channel;
pub mod client;

pub use channel::{Channel, OpenError};
