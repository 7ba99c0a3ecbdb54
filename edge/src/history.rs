//! A page of a room's history as an answer: the `history` frame's and `GET /api/history`'s,
//! through the same decoding as live delivery (a control envelope or one that cannot be decoded
//! is left out; so is a message the publisher kept from the asking client).

use ferrocast_protocol::Encoding;
use ferrocast_protocol::frame::history::HistoryFrame;
use ferrocast_protocol::frame::server::{EncodeError, MsgFrame};
use ferrocast_protocol::keys::Scope;

use crate::bus::HistoryPage;
use crate::fanout::delivery::Delivery;

/// `page` of `room`'s history encoded as the `history` answer to `reference`, for `client` (or,
/// with `None`, for the HTTP API, which no publisher excludes).
pub fn answer(
    room: &str,
    reference: Option<u64>,
    page: &HistoryPage,
    client: Option<&str>,
    encoding: Encoding,
) -> Result<Vec<u8>, EncodeError> {
    let deliveries: Vec<Delivery> = page
        .entries
        .iter()
        .filter_map(|(offset, bytes)| Delivery::decode(*offset, bytes))
        .filter(|delivery| client.is_none_or(|client| !delivery.excludes(client)))
        .collect();
    let messages: Vec<MsgFrame<'_>> = deliveries
        .iter()
        .map(|delivery| {
            let envelope = &delivery.envelope;
            MsgFrame {
                scope: Scope::Room,
                room: Some(room),
                event: &envelope.event,
                data: &envelope.data,
                offset: Some(delivery.offset()),
                id: envelope.id,
                ts: envelope.ts,
            }
        })
        .collect();
    let newest = page.newest.map(|o| o.to_string());
    let frame = HistoryFrame {
        room,
        reference,
        messages: &messages,
        offset: newest.as_deref(),
        more: page.more,
    };
    frame.encode(encoding)
}
