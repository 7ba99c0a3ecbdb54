//! Fan-out: from a message the bus received to the queues of the local connections it is for.
//!
//! The [`feed`] takes what the bus receives: it decodes it once, drops what [`dedup`] has seen,
//! and hands a worker's [`control`] message to the sessions it acts on, or has [`delivery`]
//! build the message's frame once per encoding and the [`registry`] queue it for every member.
//! [`registry`] tracks which connections are in which target (a target's `members`: one kept
//! inline, more in a map) and keeps the bus subscribed to exactly those ([`subscriptions`]); [`delivery`] builds each message's frame once per encoding
//! and hands the same bytes to every member's [`outbox`] (its queue, the `mailbox`, is what the
//! connection's task reads; what the queue holds is [`outbound`]); [`dedup`] drops messages seen twice,
//! and [`recovery`] keeps the seam between a replay and live delivery clean. [`control`] is a
//! worker's control message (join, leave, disconnect) on its way to the sessions it acts on;
//! [`presence`] is a batch of presence joins and leaves on its way to a room's members. An
//! outbox writes a frame straight to an idle connection's socket; [`cork`] gathers what a batch
//! of messages brings each connection into one write.

pub mod control;
pub mod cork;
pub mod dedup;
pub mod delivery;
pub mod feed;
mod mailbox;
mod members;
pub mod outbound;
pub mod outbox;
pub mod presence;
pub mod recovery;
pub mod registry;
mod sparse;
pub mod subscriptions;
