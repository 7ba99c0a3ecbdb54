//! The publish script and the live message it publishes (docs/protocol.md, part 2).

use crate::keys::{Keys, TargetKey};
use crate::offset::{Offset, StreamId};

/// The Lua text run (by EVALSHA) for every publish. Part of the public contract: publishers in
/// other languages run the same text with the same keys and arguments.
pub const PUBLISH_SCRIPT: &str = include_str!("script.lua");

/// Default cap on a target's history (entries).
pub const DEFAULT_HISTORY_LEN: u64 = 1000;
/// Default lifetime of a target's history after its last publish (milliseconds).
pub const DEFAULT_HISTORY_TTL_MS: u64 = 10 * 60 * 1000;

/// The script's `KEYS`, in order, for one target.
pub fn script_keys(keys: &Keys, target: &TargetKey) -> [String; 3] {
    [keys.stream(target), keys.epoch(target), keys.live(target)]
}

/// A message as it arrives on a live channel: `<entry id> <epoch> <envelope>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveMessage<'a> {
    /// Where the message sits in its target's history.
    pub offset: Offset,
    /// The MessagePack envelope, still encoded.
    pub envelope: &'a [u8],
}

impl<'a> LiveMessage<'a> {
    /// Splits a live channel payload. `None` if it is not of that shape.
    pub fn parse(payload: &'a [u8]) -> Option<LiveMessage<'a>> {
        let mut parts = payload.splitn(3, |&b| b == b' ');
        let id = parse_id(parts.next()?)?;
        let epoch = parse_id(parts.next()?)?;
        let envelope = parts.next()?;
        Some(LiveMessage {
            offset: Offset { id, epoch },
            envelope,
        })
    }
}

fn parse_id(bytes: &[u8]) -> Option<StreamId> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_live_payloads() {
        let m = LiveMessage::parse(b"5-1 3-0 \x81\xa1v\x01 tail").unwrap();
        assert_eq!(m.offset.to_string(), "5-1_3-0");
        assert_eq!(m.envelope, b"\x81\xa1v\x01 tail");
        assert!(LiveMessage::parse(b"5-1 3-0").is_none());
        assert!(LiveMessage::parse(b"x 3-0 e").is_none());
    }
}
