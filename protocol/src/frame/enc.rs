//! Encrypted frames (v1.2, part E): once a connection has set encryption up, every frame in
//! either direction is `{"type":"enc","n":N,"c":C}`, `c` being the AES-256-GCM ciphertext and
//! tag of the frame that would otherwise have been sent. This module is the wire format only
//! (constants, nonces, the frame's two encodings); the edge does the cryptography.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use bytes::BufMut;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// HKDF-SHA256's info string for the connection's AES-256-GCM key.
pub const INFO: &[u8] = b"ferrocast/v1 aes-256-gcm";
/// A nonce's first 4 bytes for frames from the edge to the client.
pub const EDGE_TO_CLIENT: [u8; 4] = [0, 0, 0, 1];
/// A nonce's first 4 bytes for frames from the client to the edge.
pub const CLIENT_TO_EDGE: [u8; 4] = [0, 0, 0, 2];
/// An uncompressed P-256 point: `0x04`, then X and Y of 32 bytes each.
pub const PUBLIC_KEY_LEN: usize = 65;
/// The edge's HKDF salt, per connection.
pub const SALT_LEN: usize = 32;
/// AES-GCM's tag, at the end of every `c`.
pub const TAG_LEN: usize = 16;

/// Base64 as keys, salts and JSON `c` are written: the standard alphabet, padded. Read with or
/// without padding, as encoders differ on it.
const READ: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The 12-byte nonce of frame `n` in `direction` ([`EDGE_TO_CLIENT`] or [`CLIENT_TO_EDGE`]).
pub fn nonce(direction: [u8; 4], n: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&direction);
    nonce[4..].copy_from_slice(&n.to_be_bytes());
    nonce
}

/// Bytes as base64 (keys and salts in `welcome` and `encrypt`).
pub fn to_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Base64 (padded or not) as bytes; `None` if it is not base64.
pub fn from_base64(text: &str) -> Option<Vec<u8>> {
    READ.decode(text).ok()
}

/// The edge's half of a key agreement (v1.2, part E), in `welcome` or the `encrypt` answer:
/// base64 strings in either encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncryptHello {
    /// The edge's ephemeral ECDH P-256 public key: an uncompressed point (65 bytes).
    pub key: String,
    /// The HKDF salt (32 random bytes).
    pub salt: String,
}

/// Why an `enc` frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncError {
    /// Not an `enc` frame, or one missing `n` or `c`, or `c` not base64.
    #[error("not an enc frame: {0}")]
    Malformed(String),
}

/// A received `enc` frame: its counter and its ciphertext with the tag at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The frame's counter in its direction.
    pub n: u64,
    /// Ciphertext, then the 16-byte tag.
    pub c: Vec<u8>,
}

#[derive(Deserialize)]
struct JsonEnc<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    n: u64,
    #[serde(borrow)]
    c: Cow<'a, str>,
}

#[derive(Deserialize)]
struct MsgPackEnc<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    n: u64,
    c: serde_bytes::ByteBuf,
}

impl Sealed {
    /// Reads a text frame: `{"type":"enc","n":N,"c":"<base64>"}`.
    pub fn from_json(bytes: &[u8]) -> Result<Sealed, EncError> {
        let raw: JsonEnc<'_> =
            serde_json::from_slice(bytes).map_err(|e| EncError::Malformed(e.to_string()))?;
        check_kind(&raw.kind)?;
        let c = from_base64(&raw.c).ok_or_else(|| EncError::Malformed("c is not base64".into()))?;
        Ok(Sealed { n: raw.n, c })
    }

    /// Reads a binary frame: the same map in MessagePack, `c` as binary.
    pub fn from_msgpack(bytes: &[u8]) -> Result<Sealed, EncError> {
        let raw: MsgPackEnc<'_> =
            rmp_serde::from_slice(bytes).map_err(|e| EncError::Malformed(e.to_string()))?;
        check_kind(&raw.kind)?;
        Ok(Sealed {
            n: raw.n,
            c: raw.c.into_vec(),
        })
    }
}

fn check_kind(kind: &str) -> Result<(), EncError> {
    if kind == "enc" {
        Ok(())
    } else {
        Err(EncError::Malformed(format!(
            "type {:?} where only enc is allowed",
            kind.chars().take(32).collect::<String>()
        )))
    }
}

const JSON_HEAD: &[u8] = b"{\"type\":\"enc\",\"n\":";
const JSON_C: &[u8] = b",\"c\":\"";
const JSON_TAIL: &[u8] = b"\"}";

/// The length of the JSON `enc` frame for counter `n` and `sealed_len` bytes of ciphertext and
/// tag, so a sender can size its buffer (and a WebSocket header) before writing it.
pub fn json_len(n: u64, sealed_len: usize) -> usize {
    JSON_HEAD.len()
        + itoa::Buffer::new().format(n).len()
        + JSON_C.len()
        + base64::encoded_len(sealed_len, true).unwrap_or(usize::MAX)
        + JSON_TAIL.len()
}

/// Appends the JSON `enc` frame carrying `sealed` (ciphertext and tag) as frame `n`:
/// [`json_len`] bytes.
pub fn write_json(out: &mut Vec<u8>, n: u64, sealed: &[u8]) {
    out.extend_from_slice(JSON_HEAD);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(JSON_C);
    // Encoded in place, into exactly the room it takes.
    let start = out.len();
    let text_len = base64::encoded_len(sealed.len(), true).unwrap_or(0);
    out.resize(start + text_len, 0);
    let written = STANDARD
        .encode_slice(sealed, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.extend_from_slice(JSON_TAIL);
}

/// The length of the MessagePack `enc` frame's bytes before its `c` ([`write_msgpack_head`]).
pub fn msgpack_head_len(n: u64, sealed_len: usize) -> usize {
    let counter = match n {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    };
    let bin = match sealed_len {
        0..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    };
    MSGPACK_HEAD.len() + counter + MSGPACK_C.len() + bin
}

const MSGPACK_HEAD: &[u8] = b"\x83\xa4type\xa3enc\xa1n";
const MSGPACK_C: &[u8] = b"\xa1c";

/// Appends the MessagePack `enc` frame's bytes up to its `c`, a binary of `sealed_len` bytes
/// that the caller appends next: `{"type":"enc","n":N,"c":<bin>}`.
pub fn write_msgpack_head(out: &mut impl BufMut, n: u64, sealed_len: usize) {
    // A fixmap of 3, then fixstr keys and values.
    out.put_slice(MSGPACK_HEAD);
    match n {
        0..=0x7f => out.put_u8(n as u8),
        0x80..=0xff => {
            out.put_u8(0xcc);
            out.put_u8(n as u8);
        }
        0x100..=0xffff => {
            out.put_u8(0xcd);
            out.put_u16(n as u16);
        }
        0x1_0000..=0xffff_ffff => {
            out.put_u8(0xce);
            out.put_u32(n as u32);
        }
        _ => {
            out.put_u8(0xcf);
            out.put_u64(n);
        }
    }
    out.put_slice(MSGPACK_C);
    match sealed_len {
        0..=0xff => {
            out.put_u8(0xc4);
            out.put_u8(sealed_len as u8);
        }
        0x100..=0xffff => {
            out.put_u8(0xc5);
            out.put_u16(sealed_len as u16);
        }
        _ => {
            out.put_u8(0xc6);
            out.put_u32(u32::try_from(sealed_len).unwrap_or(u32::MAX));
        }
    }
}

#[cfg(test)]
mod tests;
