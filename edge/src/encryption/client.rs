//! The client's half of an agreement, for Rust clients of the edge (the end-to-end tests and the
//! load generator): the key pair it offers, the key it derives from the edge's answer, and its
//! `enc` frames both ways. Browsers do the same with WebCrypto (clients/js).

use aes_gcm::aead::{Aead, OsRng};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use ferrocast_protocol::frame::enc::{self, CLIENT_TO_EDGE, EDGE_TO_CLIENT, INFO, Sealed};
use hkdf::Hkdf;
use p256::ecdh::EphemeralSecret;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use sha2::Sha256;
use thiserror::Error;

/// Why the client's half failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// The edge's `key` or `salt` is not what the contract says.
    #[error("the edge's key or salt is malformed")]
    BadHello,
    /// A frame was sealed or opened before the agreement.
    #[error("no key agreed yet")]
    NotAgreed,
    /// A frame from the edge is not an `enc` frame.
    #[error("not an enc frame")]
    NotEnc,
    /// A frame from the edge has the wrong counter.
    #[error("counter {got}, expected {expected}")]
    OutOfSequence {
        /// What it carried.
        got: u64,
        /// The next one.
        expected: u64,
    },
    /// A frame did not encrypt or decrypt.
    #[error("frame did not decrypt")]
    Crypto,
}

/// A client's key pair, and its channel once agreed.
pub struct ClientKeys {
    secret: EphemeralSecret,
    cipher: Option<Aes256Gcm>,
    sent: u64,
    received: u64,
}

impl Default for ClientKeys {
    fn default() -> Self {
        ClientKeys::new()
    }
}

impl ClientKeys {
    /// A fresh key pair.
    pub fn new() -> ClientKeys {
        ClientKeys {
            secret: EphemeralSecret::random(&mut OsRng),
            cipher: None,
            sent: 0,
            received: 0,
        }
    }

    /// The public key as `encrypt.key` carries it.
    pub fn offer(&self) -> String {
        enc::to_base64(self.secret.public_key().to_encoded_point(false).as_bytes())
    }

    /// Derives the channel's key from the edge's `key` and `salt` (base64).
    pub fn agree(&mut self, key: &str, salt: &str) -> Result<(), ClientError> {
        let key = enc::from_base64(key).ok_or(ClientError::BadHello)?;
        let salt = enc::from_base64(salt).ok_or(ClientError::BadHello)?;
        let edge = p256::PublicKey::from_sec1_bytes(&key).map_err(|_| ClientError::BadHello)?;
        let shared = self.secret.diffie_hellman(&edge);
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes())
            .expand(INFO, &mut okm)
            .map_err(|_| ClientError::BadHello)?;
        self.cipher = Some(Aes256Gcm::new(&okm.into()));
        Ok(())
    }

    /// The payload of the `enc` frame carrying `plain` (a frame's JSON text, or its
    /// MessagePack bytes when `msgpack`) as the next frame to the edge.
    pub fn seal(&mut self, plain: &[u8], msgpack: bool) -> Result<Vec<u8>, ClientError> {
        let cipher = self.cipher.as_ref().ok_or(ClientError::NotAgreed)?;
        let n = self.sent;
        let sealed = cipher
            .encrypt(&Nonce::from(enc::nonce(CLIENT_TO_EDGE, n)), plain)
            .map_err(|_| ClientError::Crypto)?;
        self.sent += 1;
        let mut out = Vec::new();
        if msgpack {
            enc::write_msgpack_head(&mut out, n, sealed.len());
            out.extend_from_slice(&sealed);
        } else {
            enc::write_json(&mut out, n, &sealed);
        }
        Ok(out)
    }

    /// What an `enc` frame from the edge carries (JSON text, or MessagePack when `msgpack`), if
    /// its counter is the next one and it decrypts.
    pub fn open(&mut self, payload: &[u8], msgpack: bool) -> Result<Vec<u8>, ClientError> {
        let cipher = self.cipher.as_ref().ok_or(ClientError::NotAgreed)?;
        let sealed = if msgpack {
            Sealed::from_msgpack(payload)
        } else {
            Sealed::from_json(payload)
        }
        .map_err(|_| ClientError::NotEnc)?;
        if sealed.n != self.received {
            return Err(ClientError::OutOfSequence {
                got: sealed.n,
                expected: self.received,
            });
        }
        let plain = cipher
            .decrypt(
                &Nonce::from(enc::nonce(EDGE_TO_CLIENT, sealed.n)),
                &*sealed.c,
            )
            .map_err(|_| ClientError::Crypto)?;
        self.received += 1;
        Ok(plain)
    }
}
