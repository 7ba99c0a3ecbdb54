//! Writing to the socket: queued frames a burst per flush, answers, and the closing handshake.
//! Every write races the edge's request to close, so a client that stops reading cannot hold its
//! task (and memory) past that.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferrocast_protocol::close::{self};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::bus::Bus;
use crate::fanout::control::Control;
use crate::fanout::outbox::{Outbound, Queued};
use crate::ops::metrics::metrics;

use super::{Session, Ws};
use crate::websocket::WsError;

/// How long a closing handshake may take before the socket is simply dropped.
pub(super) const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Most queued frames written per flush, so one busy connection cannot starve its own reads.
const BURST: usize = 256;

impl<B: Bus> Session<B> {
    /// Writes `first` and whatever else is queued (up to a burst), then flushes once. Frames a
    /// replay already sent are dropped. A control message ends the burst and is returned, to be
    /// applied after what came before it and before what follows.
    pub(super) async fn write_burst(
        &mut self,
        ws: &mut Ws,
        first: Outbound,
        queued: &Queued,
    ) -> Result<Option<Arc<Control>>, WsError> {
        let m = metrics();
        m.outbound_queue_depth.observe(queued.len() as f64 + 1.0);
        let now_ms = ferrocast_protocol::envelope::now_ms();
        let mut next = Some(first);
        let mut count = 0;
        let mut delivered = 0;
        let mut oldest_ts = None;
        let mut control = None;
        while let Some(item) = next {
            queued.taken(&item);
            let frame = match item {
                Outbound::Frame(frame) => Some(frame),
                Outbound::Control(c) => {
                    control = Some(c);
                    break;
                }
                Outbound::Fence(topic) => {
                    self.fences.passed(topic);
                    None
                }
                // What the fan-out left unwritten goes out with this burst's flush.
                Outbound::Flush => None,
                Outbound::Presence(batch) => {
                    if !self.fences.holds(batch.topic) {
                        for (about, message) in &batch.frames {
                            if **about != *self.client {
                                ws.feed(message.clone());
                            }
                        }
                    }
                    None
                }
            };
            if let Some(frame) = frame
                && !self.fences.holds(frame.topic)
                && self.seams.admit(frame.topic, frame.offset)
            {
                if let Some(offset) = frame.offset {
                    if self.own.is_noted(frame.topic) {
                        self.outbox.note_written(frame.topic, offset);
                    }
                    delivered += 1;
                    oldest_ts.get_or_insert(frame.ts);
                }
                ws.feed_shared(&frame.message, &frame.wire);
            }
            count += 1;
            next = if count < BURST {
                queued.try_recv()
            } else {
                None
            };
        }
        // Shared metrics are touched once per burst, not per frame: every connection's task
        // updates them, and the latency histogram takes a lock. The latency is the burst's
        // first (so longest-waiting) message's.
        if delivered > 0 {
            m.deliveries.inc_by(delivered);
        }
        if let Some(ts) = oldest_ts {
            m.delivery_latency
                .observe(now_ms.saturating_sub(ts) as f64 / 1000.0);
        }
        ws.flush().await?;
        Ok(control)
    }
}

/// Writes frames and flushes once, unless the edge asks the connection to close first.
/// `Err(Some(code))`: closing was asked for; `Err(None)`: the socket failed.
pub(super) async fn send_unless_kicked(
    ws: &mut Ws,
    kick_request: Pin<&mut impl Future<Output = u16>>,
    frames: impl IntoIterator<Item = Message>,
) -> Result<(), Option<u16>> {
    tokio::select! {
        written = write_all(ws, frames) => written.map_err(|_| None),
        code = kick_request => Err(Some(code)),
    }
}

/// Writes frames and flushes once.
async fn write_all(ws: &mut Ws, frames: impl IntoIterator<Item = Message>) -> Result<(), WsError> {
    for frame in frames {
        ws.feed(frame);
    }
    ws.flush().await
}

pub(super) fn kick_reason(code: u16) -> &'static str {
    match code {
        close::SLOW_CONSUMER => "slow consumer",
        close::HEARTBEAT_TIMEOUT => "heartbeat timeout",
        close::TOKEN_EXPIRED => "token expired",
        close::RATE_LIMITED => "rate limit exceeded",
        close::GOING_AWAY => "edge going away; reconnect and resume",
        close::DISCONNECTED => "disconnected by the application",
        _ => "closed by the edge",
    }
}

/// Sends a close frame and waits briefly for the client's answer.
///
/// Boxed: a connection closes once, but an inline close (a timer, a write and a read) would
/// make every idle connection's task as large as the closing one's for all its life.
pub(super) fn close_with<'a>(
    ws: &'a mut Ws,
    code: u16,
    reason: &'a str,
) -> Pin<Box<impl Future<Output = ()> + Send + 'a>> {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    ws.queue_close(Some(frame));
    finish_closing(ws)
}

/// Writes the close frame already queued (and what is ahead of it), reads until the client's
/// answer ends the stream, then lingers until the client closes its side: all of it within
/// [`CLOSE_WAIT`], after which the socket is simply dropped. A client that reads nothing cannot
/// make a close take longer.
pub(super) fn finish_closing(ws: &mut Ws) -> Pin<Box<impl Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            if ws.flush().await.is_ok() {
                while let Some(Ok(_)) = ws.next().await {}
                ws.linger().await;
            }
        })
        .await;
    })
}
