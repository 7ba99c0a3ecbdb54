//! The connection's loop: frames from the client answered in order, queued frames written a
//! burst at a time, and the edge's requests to close honoured, whichever comes first.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::time::Instant;

use ferrocast_protocol::close::{self};
use ferrocast_protocol::frame::client::{ClientFrame, FrameError, ScopeSince};
use ferrocast_protocol::frame::server::ServerFrame;
use tungstenite::Message;

use crate::bus::Bus;
use crate::fanout::outbox::{Outbound, Queued};
use crate::ops::metrics::metrics;
use crate::websocket::{Read, WsError};
use ferrocast_protocol::lifecycle::Lifecycle;

use super::encryption::Encryption;
use super::frames::Reply;
use super::rate::Verdict;
use super::replay::PAGE_WRITE_TIMEOUT;
use super::rpc_calls::poll_expired;
use super::writer::{close_with, finish_closing, kick_reason, send_unless_kicked};
use super::{ABNORMAL, Opening, Session, Ws};
use crate::refusal::Refusal;

impl<B: Bus> Session<B> {
    /// Serves the authenticated connection until it ends; returns the close code.
    pub(super) async fn serve(
        &mut self,
        ws: &mut Ws,
        queued: &Queued,
        opening: Option<Box<Opening>>,
    ) -> u16 {
        // Boxed, as everything done once: an async state machine is as large as its largest
        // await, and an idle connection's task would otherwise carry a join's or a bus call's
        // worth of state all its life.
        if let Err(code) = Box::pin(self.greet(ws, queued, opening)).await {
            return code;
        }
        // Only now: a worker answering `$connect` with a message to the client id must find the
        // connection subscribed and welcomed.
        self.welcomed = true;
        self.report(Lifecycle::Connect);
        self.serve_frames(ws, queued).await
    }

    /// Joins the connection's own targets, resumes them from `since`, and sends `welcome` with
    /// what it replays. Encryption the `auth` frame agreed starts right after `welcome`; one a
    /// header-authenticated client must set up is awaited between the two. `Err`: the code the
    /// connection was closed with.
    async fn greet(
        &mut self,
        ws: &mut Ws,
        queued: &Queued,
        opening: Option<Box<Opening>>,
    ) -> Result<(), u16> {
        let (since, agreed) = match opening {
            Some(opening) => (opening.since, opening.agreed),
            None => (ScopeSince::default(), None),
        };
        let since = &since;
        if !self.join_own().await {
            close_with(ws, close::TRY_LATER, "bus unavailable").await;
            return Err(close::TRY_LATER);
        }
        let Ok((recovered, mut replays)) = self.resume(since).await else {
            close_with(ws, close::TRY_LATER, "bus unavailable").await;
            return Err(close::TRY_LATER);
        };
        match self.client_history().await {
            Ok(history) => replays.extend(history),
            Err(_) => {
                close_with(ws, close::TRY_LATER, "bus unavailable").await;
                return Err(close::TRY_LATER);
            }
        }
        let Ok(offsets) = self.own_offsets().await else {
            close_with(ws, close::TRY_LATER, "bus unavailable").await;
            return Err(close::TRY_LATER);
        };
        let (channel, hello) = agreed.unzip();
        let welcome = self.encode(&ServerFrame::Welcome {
            client: &self.client,
            user: &self.claims.sub,
            node: &self.shared.node_id,
            heartbeat: self.shared.config.heartbeat.as_millis() as u64,
            recovered,
            offsets,
            encrypt: hello,
        });
        // Every write races the kick: a client that stops reading mid-answer (a long replay, say)
        // must still be closed when the edge asks, not hold its task and memory forever.
        let kick_request = queued.kicked();
        tokio::pin!(kick_request);
        let mut frames: Vec<Message> = welcome.into_iter().collect();
        if let Some(channel) = channel {
            // `welcome` carries the edge's key in the clear; everything after it is sealed.
            for frame in frames.drain(..) {
                ws.feed(frame);
            }
            ws.encrypt(channel);
            self.encryption = Encryption::On;
        } else if self.encryption == Encryption::Required {
            // Nothing but `welcome` goes out before the key exchange: the replays wait, and the
            // fan-out queues (its gate is shut until the loop starts).
            match send_unless_kicked(ws, kick_request.as_mut(), frames.drain(..)).await {
                Ok(()) => {}
                Err(Some(code)) => return Err(self.kicked(ws, code).await),
                Err(None) => return Err(ABNORMAL),
            }
            Box::pin(self.first_frame_encrypts(ws)).await?;
        }
        let welcome = Reply {
            frames,
            replays,
            close: None,
            budget: None,
        };
        match self.answer(ws, kick_request.as_mut(), welcome).await {
            Ok(()) => Ok(()),
            Err(Some(code)) => Err(self.kicked(ws, code).await),
            Err(None) => Err(ABNORMAL),
        }
    }

    /// Reads and answers the client's frames and writes what is queued for it, until the
    /// connection ends; returns the close code.
    async fn serve_frames(&mut self, ws: &mut Ws, queued: &Queued) -> u16 {
        // One wait for the whole connection, not one per loop turn: registering and dropping a
        // waiter on every wake-up was a measurable share of a delivery's user-space cost.
        let kick_request = queued.kicked();
        tokio::pin!(kick_request);
        loop {
            // What the fan-out had pending when a frame from the client took the writing over
            // goes out now, even if that frame needed no answer.
            if ws.has_unwritten() {
                match Box::pin(send_unless_kicked(ws, kick_request.as_mut(), None)).await {
                    Ok(()) => {}
                    Err(Some(code)) => return self.kicked(ws, code).await,
                    Err(None) => return ABNORMAL,
                }
            }
            // Idle, with nothing fenced or awaiting a seam: the fan-out may write publications
            // straight to the socket until something must go through the queue again.
            if self.fences.is_empty() && self.seams.is_empty() {
                ws.reopen(|| queued.is_empty());
            }
            // Not biased: a connection whose queue never empties must still have its frames
            // (and pongs) read. Only the wait is inline: what each event needs is done after the
            // select, boxed, so an idle connection's state is this wait's and no more.
            // Each branch only polls: the queue and the close request wake the task through
            // one slot in the mailbox, the socket through its reader slot.
            let event = tokio::select! {
                code = &mut kick_request => Event::Kicked(code),
                first = queued.recv() => Event::Queued(first),
                read = std::future::poll_fn(|cx| ws.poll_read(cx)) => Event::Incoming(read),
                // Armed only while calls wait for replies: the earliest deadline, no other.
                expired = std::future::poll_fn(|cx| poll_expired(&mut self.rpc_calls, cx)) => {
                    Event::Expired(expired)
                }
            };
            let next = match event {
                Event::Kicked(code) => ControlFlow::Break(self.kicked(ws, code).await),
                Event::Queued(first) => {
                    Box::pin(self.write_queued(ws, first, queued, kick_request.as_mut())).await
                }
                Event::Incoming(read) => {
                    // What the client asks is answered in order with what it is sent: a join's
                    // answer before the room's first message.
                    ws.hold();
                    self.life.heard(&self.shared.connections.clock);
                    Box::pin(self.read_frame(ws, read, kick_request.as_mut())).await
                }
                Event::Expired(references) => {
                    let reply = self.timed_out(&references);
                    Box::pin(self.answered(ws, kick_request.as_mut(), reply)).await
                }
            };
            if let ControlFlow::Break(code) = next {
                return code;
            }
        }
    }

    /// Writes what came out of the queue (a burst of it), then applies the control message it
    /// ended with, if any.
    async fn write_queued(
        &mut self,
        ws: &mut Ws,
        first: Outbound,
        queued: &Queued,
        mut kick: Pin<&mut impl Future<Output = u16>>,
    ) -> ControlFlow<u16> {
        // A write stuck on a client that does not read must not outlive its queue.
        let control = tokio::select! {
            written = self.write_burst(ws, first, queued) => match written {
                Ok(control) => control,
                Err(_) => return ControlFlow::Break(ABNORMAL),
            },
            code = kick.as_mut() => return ControlFlow::Break(self.kicked(ws, code).await),
        };
        let Some(control) = control else {
            return ControlFlow::Continue(());
        };
        let reply = match self.apply(&control).await {
            Ok(reply) => reply,
            Err(closing) => {
                close_with(ws, closing.code, &closing.reason).await;
                return ControlFlow::Break(closing.code);
            }
        };
        self.answered(ws, kick, reply).await
    }

    /// Acts on what the client sent: a frame answered, a close completed, a violation or a
    /// flood ended.
    async fn read_frame(
        &mut self,
        ws: &mut Ws,
        read: Read,
        kick: Pin<&mut impl Future<Output = u16>>,
    ) -> ControlFlow<u16> {
        let message = match ws.settle(read) {
            // The frame path queued the close the violation calls for.
            Some(Err(WsError::Closed(code))) => {
                finish_closing(ws).await;
                return ControlFlow::Break(code);
            }
            None | Some(Err(WsError::Io(_))) => return ControlFlow::Break(ABNORMAL),
            Some(Ok(Message::Close(frame))) => {
                // The frame path queued the answer; it goes out, and the socket is read until it
                // ends, within the close wait.
                finish_closing(ws).await;
                return ControlFlow::Break(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Some(Ok(message)) => message,
        };
        // An encrypted connection's frames are opened before they are decoded; one that does
        // not open (plain, forged, replayed, out of sequence) ends the connection.
        let message = match message {
            Message::Text(_) | Message::Binary(_) if ws.is_encrypted() => match ws.open(&message) {
                Ok(opened) => opened,
                Err(error) => {
                    close_with(ws, error.code(), &error.to_string()).await;
                    return ControlFlow::Break(error.code());
                }
            },
            message => message,
        };
        let frame = match message {
            Message::Text(text) => ClientFrame::from_json(text.as_bytes()),
            Message::Binary(bytes) => ClientFrame::from_msgpack(&bytes),
            control => return self.control_frame(ws, kick, control).await,
        };
        // Only a header-authenticated connection's first frame may set encryption up.
        let first = self.encryption == Encryption::Offered;
        if first {
            self.encryption = Encryption::Off;
        }
        // A message that came in fragments costs a frame each.
        let extra = ws.take_extra_frames();
        if extra > 0 {
            self.rate.charge(f64::from(extra));
        }
        let reply = match self.rate.take(Instant::now()) {
            Verdict::Allow => match frame {
                Ok(ClientFrame::Encrypt { key, reference }) if first => {
                    return self.set_up_encryption(ws, &key, reference).await;
                }
                Ok(frame) => self.handle(frame).await,
                Err(FrameError {
                    reference,
                    code,
                    message,
                }) => self.refused(reference, &Refusal::new(code, message)),
            },
            Verdict::Refuse => {
                metrics().rate_limited.inc();
                let reference = frame.as_ref().ok().and_then(ClientFrame::reference);
                let wait = self.rate.retry_after_ms(Instant::now());
                self.refused(reference, &Refusal::rate_limited("slow down", wait))
            }
            Verdict::Close => {
                metrics().rate_limited.inc();
                close_with(ws, close::RATE_LIMITED, "rate limit exceeded").await;
                return ControlFlow::Break(close::RATE_LIMITED);
            }
        };
        self.answered(ws, kick, reply).await
    }

    /// A WebSocket Ping or Pong: counted against the rate limit like any frame (a ping flood
    /// is a flood). An allowed ping's pong is queued, and goes out with the loop's next write,
    /// which the close request can interrupt; a refused one gets `RATE_LIMITED` and no pong.
    async fn control_frame(
        &mut self,
        ws: &mut Ws,
        mut kick: Pin<&mut impl Future<Output = u16>>,
        control: Message,
    ) -> ControlFlow<u16> {
        match self.rate.take(Instant::now()) {
            Verdict::Allow => {
                if let Message::Ping(payload) = control {
                    ws.pong(payload);
                }
                ControlFlow::Continue(())
            }
            Verdict::Refuse => {
                metrics().rate_limited.inc();
                let wait = self.rate.retry_after_ms(Instant::now());
                let refused = self.refused(None, &Refusal::rate_limited("slow down", wait));
                match send_unless_kicked(ws, kick.as_mut(), refused.frames).await {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(Some(code)) => ControlFlow::Break(self.kicked(ws, code).await),
                    Err(None) => ControlFlow::Break(ABNORMAL),
                }
            }
            Verdict::Close => {
                metrics().rate_limited.inc();
                close_with(ws, close::RATE_LIMITED, "rate limit exceeded").await;
                ControlFlow::Break(close::RATE_LIMITED)
            }
        }
    }

    /// Writes `reply`; breaks with the close code if the connection must end.
    async fn answered(
        &mut self,
        ws: &mut Ws,
        kick: Pin<&mut impl Future<Output = u16>>,
        reply: Reply,
    ) -> ControlFlow<u16> {
        match self.answer(ws, kick, reply).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(Some(code)) => ControlFlow::Break(self.kicked(ws, code).await),
            Err(None) => ControlFlow::Break(ABNORMAL),
        }
    }

    /// Writes a reply: its frames, then each of its replays a page at a time.
    pub(super) async fn answer(
        &mut self,
        ws: &mut Ws,
        mut kick: Pin<&mut impl Future<Output = u16>>,
        reply: Reply,
    ) -> Result<(), Option<u16>> {
        let written = send_unless_kicked(ws, kick.as_mut(), reply.frames);
        if reply.budget.is_some() {
            // A page of history holds its share of the edge-wide budget until written: a client
            // that does not read it is a slow consumer, as in a replay.
            match tokio::time::timeout(PAGE_WRITE_TIMEOUT, written).await {
                Ok(written) => written?,
                Err(_) => return Err(Some(close::SLOW_CONSUMER)),
            }
        } else {
            written.await?;
        }
        drop(reply.budget);
        for replay in reply.replays {
            self.stream(ws, kick.as_mut(), replay).await?;
        }
        match reply.close {
            Some(code) => Err(Some(code)),
            None => Ok(()),
        }
    }

    /// Closes the connection as the edge asked (slow consumer, heartbeat, expiry, drain, ...).
    pub(super) async fn kicked(&self, ws: &mut Ws, code: u16) -> u16 {
        if code == close::SLOW_CONSUMER {
            metrics().slow_consumer_closes.inc();
        }
        close_with(ws, code, kick_reason(code)).await;
        code
    }
}

/// What woke the connection's loop.
enum Event {
    /// The edge asked it to close, with this code.
    Kicked(u16),
    /// Its queue has something for it.
    Queued(Outbound),
    /// The client sent something (or the socket ended).
    Incoming(Read),
    /// These calls' deadlines passed with no reply.
    Expired(Vec<u64>),
}
