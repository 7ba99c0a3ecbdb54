//! The one Redis layer of Ferrocast: every connection the edge and the emitter open goes
//! through here, so connection settings, failure handling and the history reads are written
//! once.
//!
//! - [`settings`]: what the flags of both sides parse (durations, Cluster node URLs);
//! - [`tls`] and [`clients`]: `rediss://` with the system's roots or a CA file, and client
//!   certificates, for every connection;
//! - [`endpoint`]: where one Redis's connections go (a fixed address, or a Sentinel master);
//! - [`sentinel`]: the master a Sentinel group names, asked whenever a connection is made;
//! - [`pool`]: pooled multiplexed connections that drop themselves when broken, and their
//!   revalidation after a Redis restart;
//! - [`reconnecting`]: one connection that remakes itself, for a long-lived reader;
//! - [`pubsub`]: the edge's own pub/sub connection, read straight from its buffer;
//! - [`errors`]: the one classification of what Redis answered (retry, or give up);
//! - [`backoff`]: the one exponential backoff every reconnecting or retrying loop uses;
//! - [`history`] and [`replay`]: reading a target's history stream a page at a time.

pub mod backoff;
pub mod clients;
pub mod endpoint;
pub mod errors;
pub mod history;
pub mod pool;
pub mod pubsub;
pub mod reconnecting;
pub mod replay;
pub mod sentinel;
pub mod settings;
pub mod tls;

pub use backoff::Backoff;
pub use tls::{Tls, TlsFiles};
