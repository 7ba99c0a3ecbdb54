//! Setting a connection's payload encryption up (PROTOCOL.md part E) when it was authenticated
//! by header: its first frame may be `encrypt`, and must be when encryption is required. (An
//! `auth` frame carries its key itself: see `auth_frame`.) Sealing and opening are the frame
//! path's, once set up.

use std::ops::ControlFlow;
use std::time::Instant;

use ferrocast_protocol::close;
use ferrocast_protocol::frame::client::ClientFrame;
use ferrocast_protocol::frame::server::ServerFrame;
use tungstenite::Message;

use super::closing::ENCRYPTION_REQUIRED;
use super::rate::Verdict;
use super::writer::{close_with, finish_closing};
use super::{ABNORMAL, NO_STATUS, Session, Ws};
use crate::bus::Bus;
use crate::encryption::agreement;
use crate::websocket::WsError;

/// Where a connection stands with encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encryption {
    /// Not set up; its first frame may still set it up (a header-authenticated connection that
    /// has sent nothing yet).
    Offered,
    /// Not set up, and its first frame must set it up (a header-authenticated connection that
    /// must encrypt: `--require-encryption` or the token's `enc`).
    Required,
    /// Not set up, and no longer can be.
    Off,
    /// Set up: every frame both ways is sealed.
    On,
}

impl<B: Bus> Session<B> {
    /// Answers the first frame, `encrypt` with the client's `key`: the edge's half of the
    /// agreement, in the clear, and every frame after it sealed. A key that is not a P-256
    /// point closes the connection (1008).
    pub(super) async fn set_up_encryption(
        &mut self,
        ws: &mut Ws,
        key: &str,
        reference: Option<u64>,
    ) -> ControlFlow<u16> {
        match agreement::respond(key, self.shared.config.max_frame_size) {
            Ok((channel, hello)) => {
                let answer = self.encode(&ServerFrame::Encrypt {
                    reference,
                    encrypt: hello,
                });
                if let Some(answer) = answer {
                    ws.feed(answer);
                }
                ws.encrypt(channel);
                self.encryption = Encryption::On;
                // The caller's loop writes the answer before anything else.
                ControlFlow::Continue(())
            }
            Err(bad) => {
                close_with(ws, close::POLICY, bad.reason()).await;
                ControlFlow::Break(close::POLICY)
            }
        }
    }

    /// Waits, after `welcome`, for the first frame of a header-authenticated client that must
    /// encrypt, and sets encryption up from it. Any other frame first, or none within
    /// `--auth-timeout`, closes the connection with 4004. WebSocket pings meanwhile are answered
    /// and counted against the rate limit, as before `auth`. `Err`: the close code.
    pub(super) async fn first_frame_encrypts(&mut self, ws: &mut Ws) -> Result<(), u16> {
        self.encryption = Encryption::Off;
        let deadline = tokio::time::Instant::now() + self.shared.config.auth_timeout;
        loop {
            let read = std::future::poll_fn(|cx| ws.poll_read(cx));
            let Ok(read) = tokio::time::timeout_at(deadline, read).await else {
                return Err(self.refuse_unencrypted(ws).await);
            };
            self.rate.charge(f64::from(ws.take_extra_frames()));
            let frame = match ws.settle(read) {
                Some(Err(WsError::Closed(code))) => {
                    finish_closing(ws).await;
                    return Err(code);
                }
                None | Some(Err(WsError::Io(_))) => return Err(ABNORMAL),
                Some(Ok(Message::Close(frame))) => {
                    finish_closing(ws).await;
                    return Err(frame.map_or(NO_STATUS, |f| u16::from(f.code)));
                }
                Some(Ok(Message::Text(text))) => ClientFrame::from_json(text.as_bytes()),
                Some(Ok(Message::Binary(bytes))) => ClientFrame::from_msgpack(&bytes),
                Some(Ok(control)) => {
                    match self.rate.take(Instant::now()) {
                        Verdict::Allow => {}
                        Verdict::Refuse => continue,
                        Verdict::Close => {
                            close_with(ws, close::RATE_LIMITED, "rate limit exceeded").await;
                            return Err(close::RATE_LIMITED);
                        }
                    }
                    if let Message::Ping(payload) = control {
                        ws.pong(payload);
                        match tokio::time::timeout_at(deadline, ws.flush()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => return Err(ABNORMAL),
                            Err(_) => return Err(self.refuse_unencrypted(ws).await),
                        }
                    }
                    continue;
                }
            };
            return match frame {
                Ok(ClientFrame::Encrypt { key, reference }) => {
                    match self.set_up_encryption(ws, &key, reference).await {
                        ControlFlow::Continue(()) => Ok(()),
                        ControlFlow::Break(code) => Err(code),
                    }
                }
                _ => Err(self.refuse_unencrypted(ws).await),
            };
        }
    }

    async fn refuse_unencrypted(&self, ws: &mut Ws) -> u16 {
        close_with(ws, close::ENCRYPTION_REQUIRED, ENCRYPTION_REQUIRED).await;
        close::ENCRYPTION_REQUIRED
    }
}
