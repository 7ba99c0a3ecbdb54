//! The envelope's MessagePack map, read by hand.
//!
//! Every live and replayed message is decoded once per edge, and through serde each field went
//! through a visitor and a name lookup (rmp-serde was the largest part of the direct-message
//! path's user time). This reads the map in one pass over the bytes. It accepts what the serde
//! decoder accepted for a map keyed by field name (strings as `str` or `bin`, `id` as a 16-byte
//! `bin`, `data` as `bin`, `str` or an array of bytes, integers in any width that fits, `nil`
//! for absent optional fields, unknown fields skipped) and refuses the same: a missing required
//! field, a duplicate one, a wrong type. Forms rmp-serde also took that no publisher following
//! the protocol writes (a positional array instead of the map, fields keyed by index, `kind` and
//! `scope` as variant numbers) are refused. Anything else is an error, never a panic, and
//! nothing is allocated beyond the fields it returns.

use uuid::Uuid;

use super::{Envelope, Kind};
use crate::keys::Scope;

/// Why the bytes are not an envelope map.
pub type Malformed = &'static str;

/// Reads one envelope map from the front of `bytes` (bytes after it are ignored, as before).
pub fn read(bytes: &[u8]) -> Result<Envelope, Malformed> {
    let mut r = Reader { bytes, at: 0 };
    let fields = r.map_len()?;
    let mut v = None;
    let mut id = None;
    let mut kind = None;
    let mut scope = None;
    let mut target = None;
    let mut event = None;
    let mut data = None;
    let mut except = None;
    let mut ts = None;
    let mut trace = None;
    let mut room = None;
    let mut code = None;
    let mut reason = None;
    let mut reference = None;
    let mut request = None;
    let mut error = None;
    for _ in 0..fields {
        // Keys are compared as bytes: no UTF-8 check needed to tell them apart (and an unknown
        // key's bytes were never checked before either).
        match r.bytes()? {
            b"v" => set(&mut v, r.uint().and_then(fit))?,
            b"id" => set(&mut id, r.uuid())?,
            b"kind" => set(&mut kind, r.kind())?,
            b"scope" => set(&mut scope, r.scope())?,
            b"target" => set(&mut target, r.text().map(str::to_owned))?,
            b"event" => set(&mut event, r.text().map(str::to_owned))?,
            b"data" => set(&mut data, r.data())?,
            b"except" => set(&mut except, r.texts())?,
            b"ts" => set(&mut ts, r.uint())?,
            b"trace" => set(&mut trace, r.optional(|r| r.text().map(str::to_owned)))?,
            b"room" => set(&mut room, r.optional(|r| r.text().map(str::to_owned)))?,
            b"code" => set(&mut code, r.optional(|r| r.uint().and_then(fit)))?,
            b"reason" => set(&mut reason, r.optional(|r| r.text().map(str::to_owned)))?,
            b"ref" => set(&mut reference, r.optional(Reader::uint))?,
            b"request" => set(&mut request, r.optional(Reader::uuid))?,
            b"error" => set(&mut error, r.optional(|r| r.text().map(str::to_owned)))?,
            _ => r.skip()?,
        }
    }
    Ok(Envelope {
        v: v.ok_or("missing field `v`")?,
        id: id.ok_or("missing field `id`")?,
        kind: kind.ok_or("missing field `kind`")?,
        scope: scope.ok_or("missing field `scope`")?,
        target: target.ok_or("missing field `target`")?,
        event: event.unwrap_or_default(),
        data: data.unwrap_or_default(),
        except: except.unwrap_or_default(),
        ts: ts.ok_or("missing field `ts`")?,
        trace: trace.flatten(),
        room: room.flatten(),
        code: code.flatten(),
        reason: reason.flatten(),
        reference: reference.flatten(),
        request: request.flatten(),
        error: error.flatten(),
    })
}

/// Fills a field once: a second occurrence is an error, as serde's derive made it.
fn set<T>(slot: &mut Option<T>, value: Result<T, Malformed>) -> Result<(), Malformed> {
    if slot.is_some() {
        return Err("duplicate field");
    }
    *slot = Some(value?);
    Ok(())
}

fn fit<T: TryFrom<u64>>(n: u64) -> Result<T, Malformed> {
    T::try_from(n).map_err(|_| "integer out of range")
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, Malformed> {
        let b = *self.bytes.get(self.at).ok_or("truncated")?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or("truncated")?;
        let taken = self.bytes.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(taken)
    }

    fn be(&mut self, width: usize) -> Result<u64, Malformed> {
        Ok(self
            .take(width)?
            .iter()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b)))
    }

    /// Room for `claimed` elements, but no more than the bytes left: each element takes at least
    /// one, so no claimed length allocates past the input.
    fn at_most(&self, claimed: u64) -> usize {
        let left = self.bytes.len() - self.at;
        usize::try_from(claimed).map_or(left, |n| n.min(left))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn map_len(&mut self) -> Result<u64, Malformed> {
        match self.byte()? {
            m @ 0x80..=0x8f => Ok(u64::from(m & 0x0f)),
            0xde => self.be(2),
            0xdf => self.be(4),
            _ => Err("not a map"),
        }
    }

    fn array_len(&mut self) -> Result<u64, Malformed> {
        match self.byte()? {
            m @ 0x90..=0x9f => Ok(u64::from(m & 0x0f)),
            0xdc => self.be(2),
            0xdd => self.be(4),
            _ => Err("expected an array"),
        }
    }

    /// A `str` or `bin` value's bytes.
    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = match self.byte()? {
            m @ 0xa0..=0xbf => u64::from(m & 0x1f),
            0xd9 | 0xc4 => self.be(1)?,
            0xda | 0xc5 => self.be(2)?,
            0xdb | 0xc6 => self.be(4)?,
            _ => return Err("expected a string"),
        };
        self.take(usize::try_from(len).map_err(|_| "truncated")?)
    }

    /// `data`: a `bin` or `str`, or (as serde took it) an array of byte values.
    fn data(&mut self) -> Result<Vec<u8>, Malformed> {
        if !matches!(self.peek(), Some(0x90..=0x9f | 0xdc | 0xdd)) {
            return self.bytes().map(<[u8]>::to_vec);
        }
        let len = self.array_len()?;
        let mut out = Vec::with_capacity(self.at_most(len));
        for _ in 0..len {
            out.push(u8::try_from(self.uint()?).map_err(|_| "integer out of range")?);
        }
        Ok(out)
    }

    fn text(&mut self) -> Result<&'a str, Malformed> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "a string is not UTF-8")
    }

    fn texts(&mut self) -> Result<Vec<String>, Malformed> {
        let len = self.array_len()?;
        let mut out = Vec::with_capacity(self.at_most(len));
        for _ in 0..len {
            out.push(self.text()?.to_owned());
        }
        Ok(out)
    }

    fn uint(&mut self) -> Result<u64, Malformed> {
        let signed = |n: i64| u64::try_from(n).map_err(|_| "integer out of range");
        match self.byte()? {
            m @ 0x00..=0x7f => Ok(u64::from(m)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            0xd0 => signed(i64::from(self.be(1)? as u8 as i8)),
            0xd1 => signed(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => signed(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => signed(self.be(8)? as i64),
            0xe0..=0xff => Err("integer out of range"),
            _ => Err("expected an integer"),
        }
    }

    /// A `bin` of 16 bytes (UUID text was refused before, and still is).
    fn uuid(&mut self) -> Result<Uuid, Malformed> {
        if !matches!(self.peek(), Some(0xc4..=0xc6)) {
            return Err("id is not 16 bytes");
        }
        Uuid::from_slice(self.bytes()?).map_err(|_| "id is not 16 bytes")
    }

    fn kind(&mut self) -> Result<Kind, Malformed> {
        match self.bytes()? {
            b"msg" => Ok(Kind::Msg),
            b"join" => Ok(Kind::Join),
            b"leave" => Ok(Kind::Leave),
            b"disconnect" => Ok(Kind::Disconnect),
            b"reply" => Ok(Kind::Reply),
            _ => Err("unknown kind"),
        }
    }

    fn scope(&mut self) -> Result<Scope, Malformed> {
        match self.bytes()? {
            b"room" => Ok(Scope::Room),
            b"user" => Ok(Scope::User),
            b"client" => Ok(Scope::Client),
            b"all" => Ok(Scope::All),
            _ => Err("unknown scope"),
        }
    }

    fn optional<T>(
        &mut self,
        value: impl FnOnce(&mut Self) -> Result<T, Malformed>,
    ) -> Result<Option<T>, Malformed> {
        if self.peek() == Some(0xc0) {
            self.at += 1;
            return Ok(None);
        }
        value(self).map(Some)
    }

    /// Steps over one value of any type, nested ones included, without recursion: `left`
    /// counts the values still to step over.
    fn skip(&mut self) -> Result<(), Malformed> {
        let mut left: u64 = 1;
        while left > 0 {
            left -= 1;
            let m = self.byte()?;
            let (payload, items) = match m {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                0x80..=0x8f => (0, 2 * u64::from(m & 0x0f)),
                0x90..=0x9f => (0, u64::from(m & 0x0f)),
                0xa0..=0xbf => (u64::from(m & 0x1f), 0),
                0xc4 | 0xd9 => (self.be(1)?, 0),
                0xc5 | 0xda => (self.be(2)?, 0),
                0xc6 | 0xdb => (self.be(4)?, 0),
                0xc7 => (self.be(1)? + 1, 0),
                0xc8 => (self.be(2)? + 1, 0),
                0xc9 => (self.be(4)? + 1, 0),
                0xca => (4, 0),
                0xcb => (8, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xce | 0xd2 => (4, 0),
                0xcf | 0xd3 => (8, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xdc => (0, self.be(2)?),
                0xdd => (0, self.be(4)?),
                0xde => (0, 2 * self.be(2)?),
                0xdf => (0, 2 * self.be(4)?),
                0xc1 => return Err("reserved MessagePack marker"),
            };
            self.take(usize::try_from(payload).map_err(|_| "truncated")?)?;
            // Every value takes at least a byte, so this many cannot be there.
            left = left.saturating_add(items);
            if left > (self.bytes.len() - self.at) as u64 {
                return Err("truncated");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
