//! The edge's half of a key agreement: the client's public key checked, a key pair and a salt
//! made for this connection alone, and the AES-256-GCM key both sides derive.

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use ferrocast_protocol::frame::enc::{self, INFO, PUBLIC_KEY_LEN, SALT_LEN};
use ferrocast_protocol::frame::server::EncryptHello;
use hkdf::Hkdf;
use p256::ecdh::EphemeralSecret;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroize;

use super::Channel;

/// Why a client's public key was refused. The text is safe to send to the client (it holds no
/// key material).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{}", self.reason())]
pub enum BadKey {
    /// Not base64.
    NotBase64,
    /// Not 65 bytes starting with 0x04 (an uncompressed point).
    NotUncompressed,
    /// Not a point of the curve (or the point at infinity).
    NotOnCurve,
    /// The derivation failed (it cannot for a 32-byte key; kept typed rather than assumed).
    Derivation,
}

impl BadKey {
    /// The close frame's reason.
    pub fn reason(self) -> &'static str {
        match self {
            BadKey::NotBase64 => "the encryption key is not base64",
            BadKey::NotUncompressed => "the encryption key is not an uncompressed P-256 point",
            BadKey::NotOnCurve => "the encryption key is not a point of P-256",
            BadKey::Derivation => "the key derivation failed",
        }
    }
}

/// Answers the client's `key` (base64 of an uncompressed P-256 point): the connection's channel,
/// and what to send back in `welcome` or the `encrypt` answer. The edge's secret is used once and
/// dropped here.
pub fn respond(client_key: &str, max_plain: usize) -> Result<(Channel, EncryptHello), BadKey> {
    let bytes = enc::from_base64(client_key).ok_or(BadKey::NotBase64)?;
    if bytes.len() != PUBLIC_KEY_LEN || bytes[0] != 0x04 {
        return Err(BadKey::NotUncompressed);
    }
    // Checks that the point is on the curve and not the identity.
    let client = p256::PublicKey::from_sec1_bytes(&bytes).map_err(|_| BadKey::NotOnCurve)?;
    let secret = EphemeralSecret::random(&mut OsRng);
    let public = secret.public_key().to_encoded_point(false);
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let shared = secret.diffie_hellman(&client);
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes())
        .expand(INFO, &mut key)
        .map_err(|_| BadKey::Derivation)?;
    let hello = EncryptHello {
        key: enc::to_base64(public.as_bytes()),
        salt: enc::to_base64(&salt),
    };
    let channel = Channel::new(key, max_plain);
    key.zeroize();
    Ok((channel, hello))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    /// The client's side of the agreement, as a test client does it.
    fn client_key(hello: &EncryptHello, secret: &EphemeralSecret) -> [u8; 32] {
        let edge = enc::from_base64(&hello.key).unwrap();
        let edge = p256::PublicKey::from_sec1_bytes(&edge).unwrap();
        let salt = enc::from_base64(&hello.salt).unwrap();
        let shared = secret.diffie_hellman(&edge);
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes())
            .expand(INFO, &mut key)
            .unwrap();
        key
    }

    #[test]
    fn both_sides_derive_the_same_key_and_each_connection_its_own() {
        let secret = EphemeralSecret::random(&mut OsRng);
        let public = enc::to_base64(secret.public_key().to_encoded_point(false).as_bytes());
        let (channel, hello) = respond(&public, 1024).unwrap();
        assert_eq!(enc::from_base64(&hello.key).unwrap().len(), PUBLIC_KEY_LEN);
        assert_eq!(enc::from_base64(&hello.salt).unwrap().len(), SALT_LEN);
        assert!(channel.has_key(&client_key(&hello, &secret)));
        let (other, again) = respond(&public, 1024).unwrap();
        assert_ne!(hello, again, "a new key pair and salt per connection");
        assert!(!other.has_key(&client_key(&hello, &secret)));
    }

    #[test]
    fn malformed_and_off_curve_keys_are_refused() {
        let secret = EphemeralSecret::random(&mut OsRng);
        let point = secret.public_key().to_encoded_point(false);
        let compressed = secret.public_key().to_encoded_point(true);
        assert_eq!(respond("not base64!", 0).unwrap_err(), BadKey::NotBase64);
        assert_eq!(
            respond(&enc::to_base64(compressed.as_bytes()), 0).unwrap_err(),
            BadKey::NotUncompressed
        );
        assert_eq!(
            respond(&enc::to_base64(&point.as_bytes()[..64]), 0).unwrap_err(),
            BadKey::NotUncompressed
        );
        let mut off_curve = point.as_bytes().to_vec();
        off_curve[64] ^= 1;
        assert_eq!(
            respond(&enc::to_base64(&off_curve), 0).unwrap_err(),
            BadKey::NotOnCurve
        );
        let mut zero = vec![0u8; 65];
        zero[0] = 4;
        assert_eq!(
            respond(&enc::to_base64(&zero), 0).unwrap_err(),
            BadKey::NotOnCurve
        );
    }
}
