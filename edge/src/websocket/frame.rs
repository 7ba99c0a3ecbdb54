//! RFC 6455 frame headers: parsing a client's (strictly) and writing a server's. No I/O and no
//! allocation: the reader hands over byte slices, the writer a small fixed buffer.

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// The rest of a fragmented message.
    Continuation,
    /// The first frame of a text message.
    Text,
    /// The first frame of a binary message.
    Binary,
    /// Close.
    Close,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Whether this is a control frame (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A client frame's header, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Whether this is the message's last frame.
    pub fin: bool,
    /// RSV1: the message is compressed (permessage-deflate).
    pub compressed: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// Payload length.
    pub len: usize,
    /// The masking key.
    pub mask: [u8; 4],
    /// Bytes the header took.
    pub header_len: usize,
}

/// Why a frame is refused: the close code to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A protocol violation (1002).
    Protocol(&'static str),
    /// A frame or message over the limit (1009).
    TooBig,
}

/// Parses a client frame header at the start of `buf`: `Ok(None)` until enough bytes are there.
/// `compression` says whether permessage-deflate was negotiated (only then may RSV1 be set);
/// frames longer than `max_len` are refused before their payload is read.
pub fn parse(buf: &[u8], compression: bool, max_len: usize) -> Result<Option<Header>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(FrameError::Protocol("unknown opcode"))?;
    if rsv1 && (!compression || opcode.is_control() || opcode == Opcode::Continuation) {
        return Err(FrameError::Protocol("RSV1 without a compressed message"));
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (len, at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(bytes) => {
                let mut len = [0u8; 8];
                len.copy_from_slice(bytes);
                let len = u64::from_be_bytes(len);
                if len >> 63 != 0 {
                    return Err(FrameError::Protocol("64-bit length with its top bit set"));
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(FrameError::Protocol(
            "control frames are short and unfragmented",
        ));
    }
    let len = usize::try_from(len).map_err(|_| FrameError::TooBig)?;
    if len > max_len {
        return Err(FrameError::TooBig);
    }
    let Some(mask) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        compressed: rsv1,
        opcode,
        len,
        mask: [mask[0], mask[1], mask[2], mask[3]],
        header_len: at + 4,
    }))
}

/// Unmasks `payload` in place; `offset` is its position in the frame's payload.
pub fn unmask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let rotated: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    // Eight bytes at a time: a 16 MiB message must not take a byte loop's time.
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i % 4];
    }
}

/// The longest server frame header: 2 bytes and a 64-bit length.
pub const MAX_HEADER: usize = 10;

/// Writes an unmasked server frame header for a final frame into `out`; returns its length.
pub fn write_header(
    out: &mut [u8; MAX_HEADER],
    opcode: Opcode,
    compressed: bool,
    len: usize,
) -> usize {
    out[0] = 0x80 | if compressed { 0x40 } else { 0 } | opcode.bits();
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Whether `code` may appear in a close frame (RFC 6455 7.4).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn masked(b0: u8, len: usize) -> Vec<u8> {
        let mut frame = vec![b0];
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            frame.push(0x80 | 126);
            frame.extend((len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend((len as u64).to_be_bytes());
        }
        frame.extend([1, 2, 3, 4]);
        frame
    }

    #[test]
    fn headers_are_read_at_every_length_and_checked() {
        for len in [0, 125, 126, 65535, 65536] {
            let bytes = masked(0x82, len);
            let header = parse(&bytes, false, 1 << 20).unwrap().unwrap();
            assert_eq!(
                (header.len, header.header_len, header.opcode),
                (len, bytes.len(), Opcode::Binary)
            );
            for cut in 0..bytes.len() {
                assert_eq!(
                    parse(&bytes[..cut], false, 1 << 20),
                    Ok(None),
                    "{len} cut at {cut}"
                );
            }
        }
        assert_eq!(
            parse(&masked(0x81, 100), false, 99),
            Err(FrameError::TooBig)
        );
        assert!(
            parse(&masked(0xC1, 1), false, 99).is_err(),
            "RSV1 without deflate"
        );
        assert!(
            parse(&masked(0xC1, 1), true, 99)
                .unwrap()
                .unwrap()
                .compressed
        );
        assert!(
            parse(&masked(0xC0, 1), true, 99).is_err(),
            "RSV1 on a continuation"
        );
        assert!(parse(&masked(0xA1, 1), false, 99).is_err(), "RSV2");
        assert!(parse(&masked(0x83, 1), false, 99).is_err(), "opcode 3");
        assert!(
            parse(&masked(0x09, 1), false, 99).is_err(),
            "fragmented ping"
        );
        assert!(parse(&masked(0x89, 126), false, 999).is_err(), "long ping");
        assert!(parse(&[0x81, 0x01, b'x'], false, 99).is_err(), "unmasked");
        let mut huge = masked(0x82, 0);
        huge[1] = 0x80 | 127;
        huge.splice(2..2, [0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert!(parse(&huge, false, usize::MAX).is_err(), "top length bit");
    }

    #[test]
    fn server_headers_round_trip_through_the_client_reader() {
        for len in [0, 1, 125, 126, 65535, 65536, 1 << 20] {
            let mut out = [0u8; MAX_HEADER];
            let n = write_header(&mut out, Opcode::Text, true, len);
            // A server frame is unmasked: set the mask bit and add a key to read it back.
            let mut bytes = out[..n].to_vec();
            bytes[1] |= 0x80;
            bytes.extend([0, 0, 0, 0]);
            let header = parse(&bytes, true, usize::MAX).unwrap().unwrap();
            assert_eq!(
                (header.len, header.fin, header.compressed),
                (len, true, true)
            );
        }
    }

    #[test]
    fn unmasking_matches_the_byte_rule_at_any_offset_and_length() {
        for len in 0..40 {
            for offset in 0..4 {
                let original: Vec<u8> = (0..len as u8).collect();
                let mut fast = original.clone();
                unmask(&mut fast, [9, 8, 7, 6], offset);
                let slow: Vec<u8> = original
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ [9, 8, 7, 6][(offset + i) % 4])
                    .collect();
                assert_eq!(fast, slow, "{len} at {offset}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking_or_reading_past_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..32),
            compression in any::<bool>(),
            limit in 0usize..100_000,
        ) {
            if let Ok(Some(header)) = parse(&bytes, compression, limit) {
                prop_assert!(header.len <= limit);
                prop_assert!(header.header_len <= bytes.len());
                prop_assert!(!header.opcode.is_control() || (header.fin && header.len <= 125));
            }
        }
    }
}
