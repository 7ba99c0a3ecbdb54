//! A connection's channel: its AES-256-GCM key and the counter of each direction. Frames from
//! the edge are sealed under nonces `0,0,0,1 ‖ n`, frames from the client opened under
//! `0,0,0,2 ‖ n`, each `n` exactly one more than the last in its direction.

use std::cell::RefCell;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use ferrocast_protocol::frame::enc::{self, CLIENT_TO_EDGE, EDGE_TO_CLIENT, Sealed, TAG_LEN};
use thiserror::Error;
use zeroize::Zeroize;

/// The key and both counters: all an encrypted connection keeps, boxed behind its socket. The
/// cipher's key schedule (about a kilobyte) is made per frame instead of kept: an idle encrypted
/// connection then holds 64 bytes more than a plain one (56 in a 64-byte class), and a frame
/// pays a few hundred instructions for it.
pub struct Channel {
    key: [u8; 32],
    /// The counter of the next frame to the client.
    sent: u64,
    /// The counter the next frame from the client must carry.
    received: u64,
    /// The largest frame a client's `enc` may carry once opened: the edge's frame limit, which
    /// counts the frame the client would otherwise have sent.
    max_plain: usize,
}

/// The key does not outlive the connection in memory.
impl Drop for Channel {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// The counters only: the key never reaches a log.
impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("sent", &self.sent)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// Why a client's frame was not opened: each closes the connection (1008), except a frame
/// whose content is over the frame limit (1009).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpenError {
    /// Not an `enc` frame (a plain frame after encryption was set up, say).
    #[error("only enc frames are accepted once encryption is set up")]
    NotEnc,
    /// The counter is not the next one: replayed, reordered or skipped.
    #[error("frame counter out of sequence")]
    OutOfSequence,
    /// The tag did not verify: forged, altered, or under another key.
    #[error("frame did not decrypt")]
    Forged,
    /// What it carries is over the frame limit.
    #[error("frame too large")]
    TooLarge,
}

impl OpenError {
    /// The close code the error calls for.
    pub fn code(&self) -> u16 {
        match self {
            OpenError::TooLarge => ferrocast_protocol::close::TOO_BIG,
            _ => ferrocast_protocol::close::POLICY,
        }
    }
}

thread_local! {
    /// Where a JSON frame is encrypted before it is written as base64: one buffer per thread,
    /// kept, rather than one allocation per recipient.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Scratch buffers larger than this are not kept between frames.
const SCRATCH_KEPT: usize = 64 * 1024;

impl Channel {
    /// A channel under `key`, both counters at 0.
    pub(super) fn new(key: [u8; 32], max_plain: usize) -> Channel {
        Channel {
            key,
            sent: 0,
            received: 0,
            max_plain,
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.key.into())
    }

    /// The length of the `enc` frame that will carry `plain_len` bytes next: JSON (`text`) or
    /// MessagePack.
    pub fn sealed_len(&self, text: bool, plain_len: usize) -> usize {
        let sealed = plain_len + TAG_LEN;
        if text {
            enc::json_len(self.sent, sealed)
        } else {
            enc::msgpack_head_len(self.sent, sealed) + sealed
        }
    }

    /// Appends the `enc` frame carrying `plain` (a JSON text frame's bytes when `text`, else
    /// a MessagePack one's) as the next frame to the client: [`Channel::sealed_len`] bytes.
    /// False, with nothing appended and the counter unchanged, if it cannot be encrypted (only
    /// a frame of more than 64 GiB cannot).
    pub fn seal(&mut self, text: bool, plain: &[u8], out: &mut Vec<u8>) -> bool {
        let n = self.sent;
        let nonce = &Nonce::from(enc::nonce(EDGE_TO_CLIENT, n));
        let cipher = self.cipher();
        let sealed = if text {
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                scratch.clear();
                scratch.extend_from_slice(plain);
                let Ok(tag) = cipher.encrypt_in_place_detached(nonce, b"", &mut scratch) else {
                    return false;
                };
                scratch.extend_from_slice(&tag);
                enc::write_json(out, n, &scratch);
                if scratch.capacity() > SCRATCH_KEPT {
                    *scratch = Vec::new();
                }
                true
            })
        } else {
            let start = out.len();
            enc::write_msgpack_head(out, n, plain.len() + TAG_LEN);
            let body = out.len();
            out.extend_from_slice(plain);
            match cipher.encrypt_in_place_detached(nonce, b"", &mut out[body..]) {
                Ok(tag) => {
                    out.extend_from_slice(&tag);
                    true
                }
                Err(_) => {
                    out.truncate(start);
                    false
                }
            }
        };
        if sealed {
            self.sent += 1;
        }
        sealed
    }

    /// Opens a client's frame: its plaintext (the frame it would otherwise have sent), if it is
    /// the next one in sequence and its tag verifies.
    pub fn open(&mut self, text: bool, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        let sealed = if text {
            Sealed::from_json(frame)
        } else {
            Sealed::from_msgpack(frame)
        };
        let Sealed { n, c: mut plain } = sealed.map_err(|_| OpenError::NotEnc)?;
        if n != self.received {
            return Err(OpenError::OutOfSequence);
        }
        let Some(at) = plain.len().checked_sub(TAG_LEN) else {
            return Err(OpenError::Forged);
        };
        let mut tag = Tag::default();
        tag.copy_from_slice(&plain[at..]);
        plain.truncate(at);
        let nonce = Nonce::from(enc::nonce(CLIENT_TO_EDGE, n));
        self.cipher()
            .decrypt_in_place_detached(&nonce, b"", &mut plain, &tag)
            .map_err(|_| OpenError::Forged)?;
        self.received += 1;
        if plain.len() > self.max_plain {
            return Err(OpenError::TooLarge);
        }
        Ok(plain)
    }

    #[cfg(test)]
    pub(super) fn has_key(&self, key: &[u8; 32]) -> bool {
        &self.key == key
    }
}

#[cfg(test)]
mod tests;
