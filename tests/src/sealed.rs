//! A test client's half of payload encryption (PROTOCOL.md part E), in Rust with RustCrypto's
//! crates: the key pair it offers, the key it derives from the edge's answer, and its `enc`
//! frames both ways. (The Python client, tests/python/encrypted_client.py, checks the same
//! contract with another library.)

use aes_gcm::aead::{Aead, OsRng};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use ferrocast_protocol::frame::enc::{self, CLIENT_TO_EDGE, EDGE_TO_CLIENT, INFO, Sealed};
use hkdf::Hkdf;
use p256::ecdh::EphemeralSecret;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::Value;
use sha2::Sha256;

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

    /// Derives the channel's key from the edge's `{"key","salt"}`.
    pub fn agree(&mut self, hello: &Value) {
        let key = enc::from_base64(hello["key"].as_str().expect("key")).expect("base64");
        let salt = enc::from_base64(hello["salt"].as_str().expect("salt")).expect("base64");
        let edge = p256::PublicKey::from_sec1_bytes(&key).expect("a P-256 point");
        let shared = self.secret.diffie_hellman(&edge);
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes())
            .expand(INFO, &mut okm)
            .expect("32 bytes");
        self.cipher = Some(Aes256Gcm::new(&okm.into()));
    }

    fn cipher(&self) -> &Aes256Gcm {
        self.cipher.as_ref().expect("agreed first")
    }

    /// The `enc` frame carrying `plain` (a frame's JSON text, or MessagePack bytes when
    /// `msgpack`) as the next frame to the edge: the payload of a text or binary message.
    pub fn seal(&mut self, plain: &[u8], msgpack: bool) -> Vec<u8> {
        let n = self.sent;
        self.sent += 1;
        let sealed = self
            .cipher()
            .encrypt(&Nonce::from(enc::nonce(CLIENT_TO_EDGE, n)), plain)
            .expect("encrypted");
        let mut out = Vec::new();
        if msgpack {
            enc::write_msgpack_head(&mut out, n, sealed.len());
            out.extend_from_slice(&sealed);
        } else {
            enc::write_json(&mut out, n, &sealed);
        }
        out
    }

    /// What an `enc` frame from the edge carries (JSON text, or MessagePack when `msgpack`);
    /// panics unless its counter is the next one and it decrypts.
    pub fn open(&mut self, payload: &[u8], msgpack: bool) -> Vec<u8> {
        let sealed = if msgpack {
            Sealed::from_msgpack(payload)
        } else {
            Sealed::from_json(payload)
        }
        .expect("an enc frame");
        assert_eq!(sealed.n, self.received, "the edge's counter is in sequence");
        self.received += 1;
        self.cipher()
            .decrypt(
                &Nonce::from(enc::nonce(EDGE_TO_CLIENT, sealed.n)),
                &*sealed.c,
            )
            .expect("decrypts")
    }
}
