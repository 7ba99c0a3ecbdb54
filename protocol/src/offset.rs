//! Offsets: a message's position in its target's history.
//!
//! On the wire an offset is an opaque string; clients store it and send it back. Inside, it is the
//! Redis stream entry id plus the stream's epoch (see `script.lua`), written `<id>_<epoch>`. The
//! epoch lets an edge tell "history continues from here" from "Redis lost this stream and its ids
//! restarted from the clock".

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A Redis stream entry id, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl Ord for StreamId {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ms, self.seq).cmp(&(other.ms, other.seq))
    }
}

impl PartialOrd for StreamId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Text::of(&[self.ms, self.seq], b"-").as_str())
    }
}

/// Numbers joined by separators, formatted on the stack: offsets are formatted for every message
/// delivered, and one `write_str` of digits from itoa costs a fraction of the formatting
/// machinery's four-part `write!`.
struct Text {
    /// Room for four `u64`s (20 digits each) and three separators.
    buf: [u8; 83],
    len: usize,
}

impl Text {
    /// `numbers` joined by `separators` (one fewer; at most four numbers).
    fn of(numbers: &[u64], separators: &[u8]) -> Text {
        let mut text = Text {
            buf: [0; 83],
            len: 0,
        };
        for (i, number) in numbers.iter().enumerate() {
            if let Some(separator) = i.checked_sub(1).and_then(|i| separators.get(i)) {
                text.push(&[*separator]);
            }
            text.push(itoa::Buffer::new().format(*number).as_bytes());
        }
        text
    }

    fn push(&mut self, bytes: &[u8]) {
        if let Some(slot) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            slot.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Text that is not a valid stream id or offset.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a valid offset")]
pub struct BadOffset;

impl FromStr for StreamId {
    type Err = BadOffset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = s.split_once('-').ok_or(BadOffset)?;
        Ok(StreamId {
            ms: decimal(ms).ok_or(BadOffset)?,
            seq: decimal(seq).ok_or(BadOffset)?,
        })
    }
}

/// A `u64` written as plain decimal digits (no sign, no spaces), in one pass.
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.bytes().try_fold(0u64, |n, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A position in one target's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Offset {
    /// The stream entry id.
    pub id: StreamId,
    /// The epoch of the stream the entry belongs to.
    pub epoch: StreamId,
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let numbers = [self.id.ms, self.id.seq, self.epoch.ms, self.epoch.seq];
        f.write_str(Text::of(&numbers, b"-_-").as_str())
    }
}

impl FromStr for Offset {
    type Err = BadOffset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, epoch) = s.split_once('_').ok_or(BadOffset)?;
        Ok(Offset {
            id: id.parse()?,
            epoch: epoch.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let o: Offset = "1732240000000-5_1732239000000-0".parse().unwrap();
        assert_eq!(
            o.id,
            StreamId {
                ms: 1732240000000,
                seq: 5
            }
        );
        assert_eq!(o.to_string(), "1732240000000-5_1732239000000-0");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "1-2",
            "1-2_",
            "a-1_1-1",
            "1-_1-1",
            "-1_1-1",
            "1-1_1-1_1",
            "+1-1_1-1",
        ] {
            assert!(bad.parse::<Offset>().is_err(), "{bad:?}");
        }
        assert!("99999999999999999999-0_1-1".parse::<Offset>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_offset_round_trips_through_its_text(a: u64, b: u64, c: u64, d: u64) {
            let offset = Offset { id: StreamId { ms: a, seq: b }, epoch: StreamId { ms: c, seq: d } };
            let text = offset.to_string();
            proptest::prop_assert_eq!(&text, &format!("{a}-{b}_{c}-{d}"));
            proptest::prop_assert_eq!(text.parse::<Offset>(), Ok(offset));
            proptest::prop_assert_eq!(offset.id.to_string(), format!("{a}-{b}"));
        }
    }

    #[test]
    fn orders_by_time_then_sequence() {
        let a = StreamId { ms: 1, seq: 9 };
        let b = StreamId { ms: 2, seq: 0 };
        assert!(a < b);
    }
}
