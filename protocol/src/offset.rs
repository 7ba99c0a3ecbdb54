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
        write!(f, "{}-{}", self.ms, self.seq)
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
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(BadOffset);
        }
        Ok(StreamId {
            ms: ms.parse().map_err(|_| BadOffset)?,
            seq: seq.parse().map_err(|_| BadOffset)?,
        })
    }
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
        write!(f, "{}_{}", self.id, self.epoch)
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

    #[test]
    fn orders_by_time_then_sequence() {
        let a = StreamId { ms: 1, seq: 9 };
        let b = StreamId { ms: 2, seq: 0 };
        assert!(a < b);
    }
}
