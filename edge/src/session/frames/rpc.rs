//! `rpc` (v1.2): a call to the application's workers, appended to the upstream inbox like a
//! `send` (same event rules, claims and quotas) and marked as expecting a reply. The answer is
//! not written now: it is the worker's reply when it arrives ([`Session::on_rpc_reply`]), or
//! `TIMEOUT` when the call's deadline passes first ([`Session::timed_out`]).
//!
//! A call with an `id` may be retried from any connection of its user: the inbox keeps it once,
//! its reply goes to the user's target (every connection of the user hears it, and those with
//! the call pending answer it), and Redis keeps that reply for the retries that come after it.

use std::time::Duration;

use ferrocast_protocol::Envelope;
use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::reply::ReplyFrame;
use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::rpc::{MAX_PENDING, RpcCall};
use tokio::time::Instant;
use tungstenite::Message;

use super::Reply;
use crate::bus::Bus;
use crate::fanout::control::{Control, RpcReply};
use crate::ops::metrics::metrics;
use crate::refusal::Refusal;
use crate::session::Session;
use crate::session::rpc_calls::RpcCalls;

impl<B: Bus> Session<B> {
    /// Appends the call to the inbox and notes it as pending; answers nothing yet, unless it
    /// is the retry of a named call a worker has answered already.
    pub(super) async fn on_rpc(
        &mut self,
        event: String,
        data: Vec<u8>,
        id: Option<&str>,
        reference: u64,
        timeout_ms: u64,
    ) -> Result<Reply, Refusal> {
        if let Some(calls) = &self.rpc_calls {
            if calls.has(reference) {
                return Err(Refusal::new(
                    ErrorCode::BadFrame,
                    format!("a call with ref {reference} is already waiting for its reply"),
                ));
            }
            if calls.full() {
                // A place frees at the latest when the earliest pending call times out.
                let wait = calls.earliest().map_or(1, |deadline| {
                    deadline
                        .saturating_duration_since(Instant::now())
                        .as_millis() as u64
                });
                metrics().rate_limited.inc();
                return Err(Refusal::rate_limited(
                    format!("at most {MAX_PENDING} calls may wait for their replies at once"),
                    wait.max(1),
                ));
            }
        }
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let call = RpcCall {
            reference,
            deadline: ferrocast_protocol::envelope::now_ms().saturating_add(timeout_ms),
            reply_key: None,
        };
        let (appended, request) = self.send_upstream(event, data, id, Some(call)).await?;
        metrics().rpc_calls.inc();
        if let Some(kept) = appended.reply {
            return Ok(self.answer_kept(reference, &kept).into());
        }
        // Made on the first call: most connections never make one, and idle ones stay small.
        self.rpc_calls
            .get_or_insert_with(|| Box::new(RpcCalls::new()))
            .add(reference, request, deadline);
        Ok(Reply::default())
    }

    /// Answers the calls `reply` is for that are still pending here, each with its own `ref`
    /// (a named call may be pending twice, retried before its reply came). A reply to no
    /// pending call is dropped, and counted when it was this connection's own: that client
    /// had its `TIMEOUT`.
    pub(in crate::session) fn on_rpc_reply(&mut self, reply: &RpcReply) -> Reply {
        let answered = self
            .rpc_calls
            .as_mut()
            .map(|calls| calls.take(reply.request))
            .unwrap_or_default();
        if answered.is_empty() && !reply.to_user {
            metrics().rpc_late_replies.inc();
            tracing::debug!(
                reference = reply.reference,
                "reply to no pending call dropped"
            );
        }
        let frames = answered
            .into_iter()
            .filter_map(|reference| self.reply_frame(reference, reply))
            .collect();
        Reply {
            frames,
            ..Reply::default()
        }
    }

    /// Answers the retry `reference` of a named call with the reply a worker gave the first
    /// call, as Redis kept it.
    fn answer_kept(&self, reference: u64, kept: &[u8]) -> Option<Message> {
        let reply = Envelope::decode(kept)
            .ok()
            .and_then(|envelope| Control::from_envelope(&envelope));
        match reply {
            Some(Control::Reply(reply)) => self.reply_frame(reference, &reply),
            _ => {
                tracing::warn!("a kept reply cannot be decoded");
                self.encode(&ServerFrame::Error {
                    reference: Some(reference),
                    code: ErrorCode::Internal,
                    message: "the reply kept for this call cannot be read",
                    retry_after: None,
                })
            }
        }
    }

    /// The frame answering the call `reference` with `reply`.
    fn reply_frame(&self, reference: u64, reply: &RpcReply) -> Option<Message> {
        metrics().rpc_replies.inc();
        let frame = ReplyFrame {
            reference,
            data: (!reply.data.is_empty()).then_some(&reply.data[..]),
            error: reply.error.as_deref(),
        };
        match crate::fanout::delivery::as_message(frame.encode(self.encoding), self.encoding) {
            Ok(message) => Some(message),
            Err(error) => {
                // Data the emitter would have refused, from a worker that did not check: the
                // caller still gets an answer rather than waiting for nothing.
                tracing::warn!(%error, "cannot encode a worker's reply");
                self.encode(&ServerFrame::Error {
                    reference: Some(reference),
                    code: ErrorCode::Internal,
                    message: "the worker's reply cannot be encoded for this connection",
                    retry_after: None,
                })
            }
        }
    }

    /// `TIMEOUT` for each of the calls `references` whose deadline passed with no reply.
    pub(in crate::session) fn timed_out(&self, references: &[u64]) -> Reply {
        metrics().rpc_timeouts.inc_by(references.len() as u64);
        let frames = references
            .iter()
            .filter_map(|&reference| {
                self.encode(&ServerFrame::Error {
                    reference: Some(reference),
                    code: ErrorCode::Timeout,
                    message: "no reply within the call's timeout",
                    retry_after: None,
                })
            })
            .collect();
        Reply {
            frames,
            ..Reply::default()
        }
    }
}
