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
        let room = self.bytes.len() - self.at;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(room).min(room));
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
        // Each element takes at least one byte: no claimed length allocates past the input.
        let room = self.bytes.len() - self.at;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(room).min(room));
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
mod tests {
    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;

    fn envelope() -> impl Strategy<Value = Envelope> {
        let kind = prop_oneof![
            Just(Kind::Msg),
            Just(Kind::Join),
            Just(Kind::Leave),
            Just(Kind::Disconnect)
        ];
        let scope = prop_oneof![
            Just(Scope::Room),
            Just(Scope::User),
            Just(Scope::Client),
            Just(Scope::All)
        ];
        let text = || ".{0,40}";
        (
            (any::<u32>(), any::<u128>(), kind, scope, text(), text()),
            (
                proptest::collection::vec(any::<u8>(), 0..300),
                proptest::collection::vec(text(), 0..4),
                any::<u64>(),
            ),
            (
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(any::<u16>()),
                proptest::option::of(text()),
            ),
        )
            .prop_map(
                |(
                    (v, id, kind, scope, target, event),
                    (data, except, ts),
                    (trace, room, code, reason),
                )| Envelope {
                    v,
                    id: Uuid::from_u128(id),
                    kind,
                    scope,
                    target,
                    event,
                    data,
                    except,
                    ts,
                    trace,
                    room,
                    code,
                    reason,
                },
            )
    }

    fn serde_read(bytes: &[u8]) -> Option<Envelope> {
        rmp_serde::from_slice(bytes).ok()
    }

    proptest! {
        /// Whatever the emitter writes reads back the same, as it did through serde.
        #[test]
        fn reads_what_serde_writes(env in envelope()) {
            let bytes = rmp_serde::to_vec_named(&env).unwrap();
            prop_assert_eq!(read(&bytes), Ok(env));
        }

        /// Bytes changed anywhere never panic, and what is read was read alike by serde:
        /// nothing it refused gets through.
        #[test]
        fn damaged_envelopes_are_refused_as_before(
            env in envelope(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let good = rmp_serde::to_vec_named(&env).unwrap();
            let mut bytes = good.clone();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(read) = read(&bytes) {
                prop_assert_eq!(Some(read), serde_read(&bytes));
            }
            // Cut from the intact encoding: a damaged one may end early, and what follows an
            // envelope is ignored.
            let cut = &good[..cut.index(good.len())];
            prop_assert!(super::read(cut).is_err());
        }

        /// Any bytes at all: an answer, never a panic.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read(&bytes);
        }
    }

    #[derive(Serialize)]
    struct Odd<'a> {
        v: u8,
        #[serde(with = "serde_bytes")]
        target: &'a [u8],
        #[serde(with = "serde_bytes")]
        id: &'a [u8],
        kind: &'a str,
        scope: &'a str,
        extra: (
            Vec<u32>,
            std::collections::BTreeMap<&'a str, f64>,
            Option<bool>,
        ),
        ts: i64,
        #[serde(with = "serde_bytes")]
        event: &'a [u8],
        data: &'a str,
        room: Option<&'a str>,
    }

    #[test]
    fn reads_the_other_forms_serde_accepted() {
        let odd = Odd {
            v: 1,
            target: b"lobby",
            id: &[7; 16],
            kind: "msg",
            scope: "room",
            extra: (vec![1, 70_000], [("x", 1.5)].into(), None),
            ts: 5,
            event: b"say",
            data: "{}",
            room: None,
        };
        let bytes = rmp_serde::to_vec_named(&odd).unwrap();
        let env = read(&bytes).unwrap();
        assert_eq!(Some(&env), serde_read(&bytes).as_ref());
        assert_eq!(env.target, "lobby");
        assert_eq!(env.id.as_bytes(), odd.id);
        assert_eq!((env.event.as_str(), &env.data[..]), ("say", &b"{}"[..]));
        assert_eq!((env.ts, env.room), (5, None));
    }

    #[test]
    fn reads_integers_of_every_width_and_data_as_byte_values() {
        // {"v": int8 1, "id": bin 16, "kind": "msg", "scope": "all", "target": "",
        //  "ts": int64 5, "data": [0x7b, uint8 0x7d]}
        let mut bytes = vec![0x87, 0xa1, b'v', 0xd0, 0x01, 0xa2, b'i', b'd', 0xc4, 0x10];
        bytes.extend_from_slice(&[9; 16]);
        bytes.extend_from_slice(b"\xa4kind\xa3msg\xa5scope\xa3all\xa6target\xa0");
        bytes.extend_from_slice(&[0xa2, b't', b's', 0xd3, 0, 0, 0, 0, 0, 0, 0, 5]);
        bytes.extend_from_slice(&[0xa4, b'd', b'a', b't', b'a', 0x92, 0x7b, 0xcc, 0x7d]);
        let env = read(&bytes).unwrap();
        assert_eq!(Some(&env), serde_read(&bytes).as_ref());
        assert_eq!((env.v, env.ts, &env.data[..]), (1, 5, &b"{}"[..]));
        // A negative int8 where an unsigned one belongs: refused by both.
        bytes[4] = 0xff;
        assert_eq!(read(&bytes), Err("integer out of range"));
        assert_eq!(serde_read(&bytes), None);
    }

    #[test]
    fn refuses_missing_duplicate_and_mistyped_fields() {
        let env = Envelope::message(&crate::Target::Room("r".into()), "e", b"1".to_vec());
        let good = rmp_serde::to_vec_named(&env).unwrap();
        // fixmap with one field more, whose key repeats `v`.
        let mut dup = good.clone();
        dup[0] += 1;
        dup.extend_from_slice(&[0xa1, b'v', 0x01]);
        assert_eq!(read(&dup), Err("duplicate field"));
        // The map claims one field fewer: `ts`, written last, is missing.
        let mut short = good.clone();
        short[0] -= 1;
        assert_eq!(read(&short), Err("missing field `ts`"));
        // `v` as a string.
        let at = good.windows(2).position(|w| w == [0xa1, b'v']).unwrap() + 2;
        let mut typed = good[..at].to_vec();
        typed.extend_from_slice(&[0xa1, b'1']);
        typed.extend_from_slice(&good[at + 1..]);
        assert_eq!(read(&typed), Err("expected an integer"));
        assert_eq!(read(&[0x91, 0x01]), Err("not a map"));
    }

    #[test]
    fn a_claimed_length_past_the_input_is_refused_without_allocating_it() {
        // `except`: an array of 2^32-1 strings, in a few bytes.
        let bytes = [
            0x81, 0xa6, b'e', b'x', b'c', b'e', b'p', b't', 0xdd, 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(read(&bytes), Err("truncated"));
        // An unknown field nesting maps that claim billions of entries.
        let bytes = [0x81, 0xa1, b'z', 0xdf, 0xff, 0xff, 0xff, 0xff, 0x00];
        assert_eq!(read(&bytes), Err("truncated"));
    }
}
