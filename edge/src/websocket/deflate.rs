//! permessage-deflate (RFC 7692), as docs/protocol.md has it: no context takeover on either
//! side, so no connection keeps compression state between messages, and a message compressed
//! once can go to every recipient that negotiated the extension.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{self as inflate_core, DecompressorOxide, inflate_flags};

/// Inflate into one buffer holding the whole message.
const NON_WRAPPING: u32 = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;

/// What a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// The client asked for a server window under 15 bits: its messages are sent as stored
    /// (uncompressed) deflate blocks, which any window can read.
    pub small_window: bool,
}

/// The empty stored block a sync flush ends with, which the wire format leaves out.
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Picks the first `permessage-deflate` offer of `Sec-WebSocket-Extensions` values that can be
/// honoured with no context takeover; returns it and the response header's value.
pub fn negotiate<'a>(offers: impl Iterator<Item = &'a str>) -> Option<(Deflate, String)> {
    offers.flat_map(|value| value.split(',')).find_map(accept)
}

fn accept(offer: &str) -> Option<(Deflate, String)> {
    let mut parts = offer.split(';').map(str::trim);
    if parts.next()? != "permessage-deflate" {
        return None;
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut server_bits = None;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        if seen.contains(&name) {
            return None; // A parameter twice: the offer is invalid.
        }
        seen.push(name);
        let bits = |value: Option<&str>| {
            value
                .and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=15).contains(b))
        };
        match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", value) => server_bits = Some(bits(value)?),
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", value) => {
                bits(value)?;
            }
            _ => return None,
        }
    }
    let mut response =
        String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = server_bits {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    let small_window = server_bits.is_some_and(|b| b < 15);
    Some((Deflate { small_window }, response))
}

thread_local! {
    // Reset for every message (no context takeover): kept only to spare the allocation.
    static FAST: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
    static STORED: RefCell<Compress> = RefCell::new(Compress::new(Compression::none(), false));
    // Boxed: the decompressor's tables are some KiB.
    static INFLATE: RefCell<Box<DecompressorOxide>> = RefCell::new(Box::default());
}

/// `payload` compressed for the wire (the sync flush's empty block left out). Stored blocks for
/// a client with a small window.
pub fn compress(payload: &[u8], small_window: bool) -> Bytes {
    let run = |compressor: &RefCell<Compress>| {
        let mut compressor = compressor.borrow_mut();
        compressor.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            let before = compressor.total_in();
            // A failure here is a bug in the compressor, not the data: send it stored instead.
            if compressor
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .is_err()
            {
                return None;
            }
            input = &input[(compressor.total_in() - before) as usize..];
            if input.is_empty() && out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
                return Some(out);
            }
            out.reserve(out.capacity().max(64));
        }
    };
    let fast = if small_window { None } else { FAST.with(run) };
    Bytes::from(fast.or_else(|| STORED.with(run)).unwrap_or_default())
}

/// Inflates a compressed message; `Ok(None)` if it is not valid deflate data, `Err` as soon as
/// it would exceed `max` bytes (a small message can inflate to gigabytes: never allocated).
///
/// The whole message is inflated into one buffer that does not wrap, so a back-reference to
/// before the message's first byte is an error, as RFC 7692 has it with no context takeover,
/// rather than a read of an empty window as zeros.
pub fn inflate(compressed: &[u8], max: usize) -> Result<Option<Vec<u8>>, TooBig> {
    INFLATE.with(|state| {
        let mut state = state.borrow_mut();
        state.init();
        let limit = max.saturating_add(1);
        let mut out = vec![0u8; compressed.len().saturating_mul(4).max(64).min(limit)];
        let mut written = 0;
        for (chunk, more) in [(compressed, true), (&TAIL[..], false)] {
            let mut rest = chunk;
            loop {
                let flags = NON_WRAPPING
                    | if more {
                        inflate_flags::TINFL_FLAG_HAS_MORE_INPUT
                    } else {
                        0
                    };
                let (status, read, wrote) =
                    inflate_core::decompress(&mut state, rest, &mut out, written, flags);
                rest = &rest[read..];
                written += wrote;
                if written > max {
                    return Err(TooBig);
                }
                match status {
                    // The client ended the message with a final block.
                    TINFLStatus::Done => {
                        out.truncate(written);
                        return Ok(Some(out));
                    }
                    TINFLStatus::HasMoreOutput => {
                        // Room up to one byte past the limit, to see a message that exceeds it.
                        let grown = out.len().saturating_mul(2).min(limit);
                        if grown <= out.len() {
                            return Err(TooBig);
                        }
                        out.resize(grown, 0);
                    }
                    TINFLStatus::NeedsMoreInput => break,
                    // Everything read, at the block boundary the empty stored block made.
                    TINFLStatus::FailedCannotMakeProgress if !more && rest.is_empty() => break,
                    _ => return Ok(None),
                }
            }
        }
        out.truncate(written);
        Ok(Some(out))
    })
}

/// A message inflated past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooBig;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_accepted_without_context_takeover_or_declined() {
        let (deflate, response) =
            negotiate(["permessage-deflate; client_max_window_bits"].into_iter()).unwrap();
        assert!(!deflate.small_window);
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let (deflate, response) =
            negotiate(["permessage-deflate; server_max_window_bits=9"].into_iter()).unwrap();
        assert!(deflate.small_window);
        assert!(response.ends_with("server_max_window_bits=9"));
        for declined in [
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert_eq!(negotiate([declined].into_iter()), None, "{declined}");
        }
        // The first acceptable offer of several wins.
        let offers = "permessage-deflate; server_max_window_bits=7, permessage-deflate";
        assert!(!negotiate([offers].into_iter()).unwrap().0.small_window);
    }

    #[test]
    fn messages_round_trip_and_inflation_is_bounded() {
        let text = br#"{"type":"msg","scope":"room","room":"chat:1","event":"e","data":"hello hello hello hello"}"#.repeat(40);
        for small_window in [false, true] {
            let wire = compress(&text, small_window);
            assert!(!wire.ends_with(&TAIL));
            if !small_window {
                assert!(
                    wire.len() * 5 < text.len(),
                    "{} of {}",
                    wire.len(),
                    text.len()
                );
            }
            assert_eq!(
                inflate(&wire, text.len()).unwrap().as_deref(),
                Some(&text[..])
            );
            assert_eq!(inflate(&wire, text.len() - 1), Err(TooBig));
        }
        assert_eq!(
            inflate(&compress(b"", false), 10).unwrap().as_deref(),
            Some(&b""[..])
        );
        assert_eq!(inflate(b"\xff\xff\xff", 100), Ok(None));
        // A back-reference before the message's first byte: a fixed-Huffman block whose first
        // symbol is a match (length 3, distance 1) with nothing before it.
        assert_eq!(inflate(&[0x03, 0x02, 0x00], 100), Ok(None));
        // The same match after a literal is fine.
        let wire = compress(b"aaaa", false);
        assert_eq!(inflate(&wire, 100).unwrap().as_deref(), Some(&b"aaaa"[..]));
        // A bomb: a megabyte of zeros in a few kilobytes, refused at the limit.
        let bomb = compress(&vec![0u8; 1 << 20], false);
        assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
        assert_eq!(inflate(&bomb, 64 * 1024), Err(TooBig));
    }
}
