//! permessage-deflate (RFC 7692), as PROTOCOL.md v1.1 has it: no context takeover on either
//! side, so no connection keeps compression state between messages, and a message compressed
//! once can go to every recipient that negotiated the extension.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

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
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(false));
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
pub fn inflate(compressed: &[u8], max: usize) -> Result<Option<Vec<u8>>, TooBig> {
    INFLATE.with(|inflater| {
        let mut inflater = inflater.borrow_mut();
        inflater.reset(false);
        let mut out = Vec::new();
        for (chunk, flush) in [
            (compressed, FlushDecompress::None),
            (&TAIL[..], FlushDecompress::Sync),
        ] {
            let mut rest = chunk;
            loop {
                if out.len() == out.capacity() {
                    // Room up to one byte past the limit, to see a message that exceeds it.
                    let room = (max + 1).saturating_sub(out.len());
                    if room == 0 {
                        return Err(TooBig);
                    }
                    out.reserve(room.min(out.len().max(1024)));
                }
                let (read, written) = (inflater.total_in(), out.len());
                let status = match inflater.decompress_vec(rest, &mut out, flush) {
                    Ok(status) => status,
                    Err(_) => return Ok(None),
                };
                if out.len() > max {
                    return Err(TooBig);
                }
                rest = &rest[(inflater.total_in() - read) as usize..];
                if status == Status::StreamEnd {
                    return Ok(Some(out));
                }
                // Done with this chunk once it is all read and the output has room to spare.
                let stalled = out.len() == written && inflater.total_in() == read;
                if (rest.is_empty() && out.len() < out.capacity())
                    || (stalled && out.len() < out.capacity())
                {
                    break;
                }
            }
        }
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
        // A bomb: a megabyte of zeros in a few kilobytes, refused at the limit.
        let bomb = compress(&vec![0u8; 1 << 20], false);
        assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
        assert_eq!(inflate(&bomb, 64 * 1024), Err(TooBig));
    }
}
