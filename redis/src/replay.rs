//! A replay of one target's history after an offset, read a page at a time.
//!
//! Opening a replay settles everything a client is told up front, from one consistent look at
//! the history: whether it still reaches back to `since` in the same epoch (`recovered`), and its
//! newest offset (`last`), where the replay ends and live delivery takes over. The entries in
//! between are then read page by page, each page written to the socket before the next is read,
//! so a replay costs one page of memory whatever its length, and a client that stops reading
//! stops the reads with it. Pages are cut to [`PAGE_BYTES`] (at least one entry each).

use bytes::Bytes;
use ferrocast_protocol::Offset;
use ferrocast_protocol::offset::StreamId;

/// Most bytes of envelopes in one page.
pub const PAGE_BYTES: usize = 256 * 1024;
/// Most entries asked for in one read.
const MAX_COUNT: usize = 100;

/// Where a replay stands.
#[derive(Debug, Clone)]
pub struct ReplayCursor {
    /// True only if the history holds every message published after `since`: it still reaches
    /// back to `since` in the same epoch (Redis did not lose it meanwhile).
    pub recovered: bool,
    /// The newest offset in the history when the replay was opened, if it has any: the replay
    /// ends there, and live messages go on after it.
    pub last: Option<Offset>,
    epoch: StreamId,
    /// Entries after this id are next (`None`: from the start of the history).
    after: Option<StreamId>,
    /// Entries to ask for in the next read, sized from the last page so one read brings about a
    /// page of bytes.
    count: usize,
    done: bool,
    interrupted: bool,
    /// Whether `after` is an entry known to exist (delivered, or `since` found): only then does
    /// its disappearance mean the history was trimmed past the replay.
    anchored: bool,
}

impl ReplayCursor {
    /// A replay with nothing to read.
    pub fn finished(recovered: bool, last: Option<Offset>) -> ReplayCursor {
        ReplayCursor {
            recovered,
            last,
            epoch: StreamId::default(),
            after: None,
            count: MAX_COUNT,
            done: true,
            interrupted: false,
            anchored: false,
        }
    }

    /// A replay of the entries after `after` (all of the epoch's, for `None`) up to `last`.
    pub fn new(recovered: bool, last: Option<Offset>, after: Option<StreamId>) -> ReplayCursor {
        let done = match (last, after) {
            (None, _) => true,
            (Some(last), Some(after)) => after >= last.id,
            (Some(_), None) => false,
        };
        ReplayCursor {
            recovered,
            last,
            epoch: last.map(|l| l.epoch).unwrap_or_default(),
            after,
            count: MAX_COUNT,
            done,
            interrupted: false,
            anchored: recovered && after.is_some(),
        }
    }

    /// Whether every page has been read (or the replay was cut short).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the replay was cut short: the history changed epoch (Redis lost it) or could not
    /// be read while it was under way. Messages up to `last` may then be missing.
    pub fn was_interrupted(&self) -> bool {
        self.interrupted
    }

    /// Ends the replay early: what was not read yet is missing.
    pub fn interrupt(&mut self) {
        self.done = true;
        self.interrupted = true;
    }

    /// The epoch the replay reads.
    pub fn epoch(&self) -> StreamId {
        self.epoch
    }

    /// Where the next read starts (exclusive), if not at the start of the history.
    pub fn after(&self) -> Option<StreamId> {
        self.after
    }

    /// How many entries the next read asks for.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Takes a page just read, with the epoch the history had then and whether the entry the
    /// page follows (the cursor's `after`) was still there: drops what lies beyond `last`,
    /// keeps at most [`PAGE_BYTES`] (at least one entry), moves the cursor past what it keeps
    /// and sizes the next read. Returns what to deliver.
    ///
    /// A history trimmed past the cursor while the replay was under way (a publisher with a
    /// shorter history length, say) has lost what came next: the replay ends there, interrupted,
    /// rather than skip over the hole unannounced.
    pub fn take(
        &mut self,
        mut page: Vec<(Offset, Bytes)>,
        epoch_now: Option<StreamId>,
        after_still_there: bool,
    ) -> Vec<(Offset, Bytes)> {
        if self.done {
            return Vec::new();
        }
        let Some(last) = self.last else {
            self.done = true;
            return Vec::new();
        };
        if epoch_now != Some(self.epoch) || (self.anchored && !after_still_there) {
            self.interrupt();
            return Vec::new();
        }
        page.retain(|(offset, _)| offset.id <= last.id);
        let mut bytes = 0;
        let keep = page
            .iter()
            .take_while(|(_, envelope)| {
                let fits = bytes == 0 || bytes + envelope.len() <= PAGE_BYTES;
                bytes += envelope.len();
                fits
            })
            .count();
        page.truncate(keep);
        let Some((newest, _)) = page.last() else {
            self.done = true;
            return page;
        };
        self.after = Some(newest.id);
        self.anchored = true;
        let kept_bytes: usize = page.iter().map(|(_, e)| e.len()).sum();
        let average = (kept_bytes / page.len()).max(1);
        self.count = (PAGE_BYTES / average).clamp(1, MAX_COUNT);
        // Not "fewer than asked, so that was all": entries without an envelope are skipped before
        // this, and one such would end a replay early. An empty page is what ends it.
        self.done = newest.id >= last.id;
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId { ms, seq: 0 }
    }

    fn at(ms: u64) -> Offset {
        Offset {
            id: id(ms),
            epoch: id(1),
        }
    }

    fn entries(from: u64, to: u64, size: usize) -> Vec<(Offset, Bytes)> {
        (from..=to)
            .map(|ms| (at(ms), Bytes::from(vec![0u8; size])))
            .collect()
    }

    #[test]
    fn pages_stop_at_the_last_offset_known_when_opened() {
        let mut cursor = ReplayCursor::new(true, Some(at(5)), Some(id(2)));
        assert!(!cursor.is_done());
        let page = cursor.take(entries(3, 8, 10), Some(id(1)), true);
        assert_eq!(
            page.len(),
            3,
            "4 and 5 and 3; 6 to 8 came after the replay was opened"
        );
        assert!(cursor.is_done());
        assert!(!cursor.was_interrupted());
    }

    #[test]
    fn a_page_holds_at_most_page_bytes_but_always_one_entry() {
        let mut cursor = ReplayCursor::new(true, Some(at(100)), None);
        let page = cursor.take(entries(1, 100, PAGE_BYTES / 4), Some(id(1)), true);
        assert_eq!(page.len(), 4);
        assert_eq!(cursor.after(), Some(id(4)));
        assert_eq!(cursor.count(), 4, "the next read asks for about a page");
        let page = cursor.take(entries(5, 8, PAGE_BYTES * 3), Some(id(1)), true);
        assert_eq!(
            page.len(),
            1,
            "an entry larger than a page still goes alone"
        );
        assert_eq!(cursor.count(), 1);
        assert!(!cursor.is_done());
    }

    #[test]
    fn an_epoch_change_or_an_empty_page_ends_the_replay() {
        let mut cursor = ReplayCursor::new(true, Some(at(9)), Some(id(2)));
        assert!(cursor.take(entries(3, 4, 10), Some(id(7)), true).is_empty());
        assert!(cursor.is_done() && cursor.was_interrupted());

        let mut cursor = ReplayCursor::new(true, Some(at(9)), Some(id(2)));
        assert!(
            cursor
                .take(entries(5, 6, 10), Some(id(1)), false)
                .is_empty()
        );
        assert!(
            cursor.is_done() && cursor.was_interrupted(),
            "trimmed past the cursor"
        );

        let mut cursor = ReplayCursor::new(true, Some(at(9)), Some(id(2)));
        assert!(cursor.take(Vec::new(), Some(id(1)), true).is_empty());
        assert!(cursor.is_done() && !cursor.was_interrupted());
        assert!(ReplayCursor::new(true, Some(at(9)), Some(id(9))).is_done());
        assert!(ReplayCursor::new(false, None, None).is_done());
    }
}
