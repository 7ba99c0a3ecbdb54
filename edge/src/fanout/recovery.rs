//! Resuming: turning a page of replay from history into frames for one connection, through the
//! same decoding and the same filters (`except`, duplicates) as live delivery. What keeps the
//! seam between replay and live free of duplicates is in [`dedup`](super::dedup).

use std::collections::HashSet;

use bytes::Bytes;
use ferrocast_protocol::{Encoding, Offset};
use tungstenite::Message;

use crate::fanout::dedup::Written;
use crate::fanout::delivery::Delivery;

/// The frames of a page of replay for a connection: messages it is not excluded from, not
/// already `written`, in its encoding, in order. A message id stored twice in the history (a
/// retried publish) is sent once: `ids` holds those already sent.
pub fn frames(
    entries: &[(Offset, Bytes)],
    client: &str,
    encoding: Encoding,
    written: &Written,
    ids: &mut HashSet<uuid::Uuid>,
) -> Vec<Message> {
    entries
        .iter()
        .filter(|(offset, _)| !written.contains(*offset))
        .filter_map(|(offset, bytes)| Delivery::decode(*offset, bytes))
        .filter(|delivery| ids.insert(delivery.envelope.id))
        .filter(|delivery| !delivery.excludes(client))
        .filter_map(|mut delivery| delivery.frame(encoding))
        .collect()
}
