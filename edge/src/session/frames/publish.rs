//! `publish`: a message to a room the connection is in, if its token allows, within its quotas.

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::{Envelope, Target, request_id};

use super::Reply;
use crate::bus::Bus;
use crate::ops::metrics::metrics;
use crate::refusal::Refusal;
use crate::session::Session;
use crate::session::rate::ByteQuota;

impl<B: Bus> Session<B> {
    /// Answers `publish` with `ack` and the message's offset.
    pub(super) async fn on_publish(
        &mut self,
        room: String,
        event: &str,
        data: Vec<u8>,
        echo: bool,
        id: Option<&str>,
        reference: Option<u64>,
    ) -> Result<Reply, Refusal> {
        let offset = self.publish(room, event, data, echo, id).await?;
        Ok(self
            .encode(&ServerFrame::Ack {
                reference,
                offset: Some(offset),
                id: None,
            })
            .into())
    }

    /// Publishes to `room`; the offset it was stored at. With `id`, the client's id for it, the
    /// message's id is derived from the user and `id`: publishing it again while the room's
    /// history lives stores nothing and answers the first offset.
    async fn publish(
        &mut self,
        room: String,
        event: &str,
        data: Vec<u8>,
        echo: bool,
        id: Option<&str>,
    ) -> Result<String, Refusal> {
        if !self.claims.publish.allows(&room) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the token does not allow publishing to this room",
            ));
        }
        self.check_event_rate(event)?;
        if !self.rooms.contains(&room) {
            return Err(Refusal::new(
                ErrorCode::NotJoined,
                "join the room before publishing to it",
            ));
        }
        self.check_data(&data)?;
        let config = &self.shared.config;
        // Made on the first `publish`: most connections never publish, and idle ones stay small.
        let quota = self.publish_quota.get_or_insert_with(|| {
            Box::new(ByteQuota::new(
                config.publish_bytes_rate,
                config.max_data_size,
            ))
        });
        if let Err(wait) = quota.take(data.len(), std::time::Instant::now()) {
            metrics().rate_limited.inc();
            return Err(Refusal::rate_limited(
                "publish quota exceeded (--publish-bytes-rate)",
                wait,
            ));
        }
        let mut envelope = Envelope::message(&Target::Room(room), event, data);
        if let Some(id) = id {
            envelope.id = request_id::message_id(&self.claims.sub, id);
        }
        if !echo {
            envelope.except.push(self.client.to_string());
        }
        let idempotent = id.is_some();
        Ok(self
            .shared
            .bus
            .publish(&envelope, idempotent)
            .await?
            .to_string())
    }
}
