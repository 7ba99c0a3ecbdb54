//! `send`: a message to the application's workers, appended to the upstream inbox, if the edge
//! takes the event upstream and the token allows it, within the connection's quotas.

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::rpc::RpcCall;
use ferrocast_protocol::{Upstream, request_id};
use uuid::Uuid;

use super::Reply;
use crate::bus::{Appended, Bus};
use crate::ops::metrics::metrics;
use crate::refusal::Refusal;
use crate::session::Session;
use crate::session::rate::UpstreamQuota;

impl<B: Bus> Session<B> {
    /// Answers `send` with `ack` and the inbox entry's id.
    pub(super) async fn on_send(
        &mut self,
        event: String,
        data: Vec<u8>,
        request: Option<&str>,
        reference: Option<u64>,
    ) -> Result<Reply, Refusal> {
        let (appended, _) = self.send_upstream(event, data, request, None).await?;
        Ok(self
            .encode(&ServerFrame::Ack {
                reference,
                offset: None,
                id: Some(appended.id),
            })
            .into())
    }

    /// Appends a `send` (or, with `rpc`, a call) to the upstream inbox; returns what Redis
    /// answered, and the message's id. With `request`, the client's id for it: a retry within
    /// ten minutes stores nothing new and answers the first id (and a call's kept reply), and
    /// workers see the same message id each time.
    pub(super) async fn send_upstream(
        &mut self,
        event: String,
        data: Vec<u8>,
        request: Option<&str>,
        rpc: Option<RpcCall>,
    ) -> Result<(Appended, Uuid), Refusal> {
        if !self.shared.upstream_events.allows(&event) {
            let message = if self.shared.config.upstream_events.is_empty() {
                "upstream messages are not enabled on this edge"
            } else {
                "this event may not be sent upstream"
            };
            return Err(Refusal::new(ErrorCode::Forbidden, message));
        }
        self.check_event_rate(&event)?;
        if let Some(send) = &self.claims.send
            && !send.allows(&event)
        {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the token does not allow sending this event",
            ));
        }
        self.check_data(&data)?;
        let config = &self.shared.config;
        // Made on the first `send`: most connections never send, and idle ones stay small.
        let quota = self.upstream_quota.get_or_insert_with(|| {
            Box::new(UpstreamQuota::new(
                config.upstream_rate,
                config.upstream_burst,
                config.upstream_bytes_rate,
                config.max_data_size,
            ))
        });
        if let Err(wait) = quota.take(data.len(), std::time::Instant::now()) {
            metrics().rate_limited.inc();
            return Err(Refusal::rate_limited(
                "upstream quota exceeded (--upstream-rate, --upstream-bytes-rate)",
                wait,
            ));
        }
        if !self.shared.bus.is_ready() {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the bus is reconnecting; retry",
            ));
        }
        let span = tracing::info_span!("upstream", %event);
        let upstream = Upstream {
            v: ferrocast_protocol::envelope::VERSION,
            id: request.map_or_else(Uuid::now_v7, |request| {
                request_id::message_id(&self.claims.sub, request)
            }),
            client: self.client.to_string(),
            user: self.claims.sub.clone(),
            node: self.shared.node_id.clone(),
            event,
            data,
            meta: self
                .claims
                .meta
                .as_ref()
                .and_then(|meta| serde_json::to_vec(meta).ok()),
            ts: ferrocast_protocol::envelope::now_ms(),
            trace: span.in_scope(ferrocast_emitter::current_traceparent),
            rpc,
        };
        let id = self.shared.bus.send_upstream(&upstream, request).await?;
        metrics().upstream_appends.inc();
        Ok((id, upstream.id))
    }
}
