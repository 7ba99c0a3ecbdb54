//! Ferrocast's wire formats, with no I/O: what clients and edges say over a WebSocket
//! ([`frame`]), what publishers put into Redis ([`envelope`], [`script`]) or send an edge's HTTP
//! API ([`publish_body`]), and the names, offsets and codes both sides share. docs/protocol.md
//! states the contract; this crate is its one implementation, linked by the edge, the emitter
//! and the tests alike.

pub mod close;
pub mod data;
pub mod envelope;
pub mod frame;
pub mod keys;
pub mod lifecycle;
pub mod names;
pub mod offset;
pub mod presence;
pub mod publish_body;
pub mod request_id;
pub mod rpc;
pub mod script;
pub mod upstream;

pub use envelope::{Envelope, Kind};
pub use frame::Encoding;
pub use keys::{Keys, Scope, Target, TargetKey};
pub use offset::Offset;
pub use publish_body::PublishBody;
pub use upstream::Upstream;
