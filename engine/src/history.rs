//! The per-user history ring: recent events of one user, for offline delivery and resume.
//!
//! Bounded by count (the oldest is evicted when full), by bytes (the oldest are evicted until
//! the new event fits; an event larger than the whole byte limit is not kept at all) and by
//! age (events older than the limit are expired whenever the ring is touched). Every eviction
//! raises `evicted_upto`, the highest seq this node no longer holds; a resume from below it
//! gets a [`Gap`] so the client knows it missed something rather than silently missing it.
//!
//! An entry's size is its frame's length plus [`ENTRY_OVERHEAD`] (the entry, the shared
//! buffer's header and the allocator's rounding, approximately): so a flood of tiny events is
//! bounded by the byte limit too. The ring keeps the sum ([`HistoryRing::bytes`]) as it pushes
//! and evicts: reading it is O(1).
//!
//! Consecutive `message_delta` events of one message are kept as one entry (a
//! [`DeltaRun`], see [`crate::delta`]): a push whose previous entry is a delta of the same
//! message, at the seq before it, is appended to that entry (bounded by
//! [`MAX_MERGED_BYTES`](crate::delta::MAX_MERGED_BYTES) of text; then a new entry starts).
//! The entry's seq is the last it covers, its time the last piece's (so a message ages out
//! as a whole, after its newest piece), and it is replayed as one frame cut to what the
//! client lacks ([`HistoryEntry::replay_frame`]): a resume in the middle of a message gets
//! the rest of the text held as one delta. A thousand tokens cost one entry and their text,
//! not a thousand frames.
//!
//! Seqs only increase within a ring. A ring starts with `evicted_upto` equal to the seq before
//! its first event (the user's seq base): a client resuming from an older incarnation of the
//! user's state, evicted after its TTL, is told of the gap too.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::delta::{self, DeltaRun};
use crate::event::Priority;
use crate::frame::FramePool;

/// One event kept for a user.
///
/// 56 bytes: the publish time and the priority share one word ([`at_ms`](Self::at_ms) in the
/// high bits, [`priority`](Self::priority) in the low 2), so the merged-delta pointer costs
/// no size. A user's history is read and written by every publish to the user; a bigger
/// entry measured +5% on criterion's per-user bursts.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The per-user seq.
    pub seq: u64,
    /// `at_ms << 2 | priority`.
    stamp: u64,
    /// The wire frame, shared with the live delivery (for a merged entry: empty, see
    /// [`replay_frame`](Self::replay_frame)).
    pub frame: Bytes,
    /// The deltas merged into this entry (see the [module docs](self)).
    pub(crate) merged: Option<Box<DeltaRun>>,
}

const _: () = assert!(size_of::<HistoryEntry>() == 56);

impl HistoryEntry {
    /// An entry for the event of `seq` whose wire frame is `frame`.
    pub fn new(seq: u64, priority: Priority, at_ms: u64, frame: Bytes) -> HistoryEntry {
        HistoryEntry {
            seq,
            stamp: stamp(at_ms, priority),
            frame,
            merged: None,
        }
    }

    /// An entry holding the merged deltas `run` (as the ring keeps them: see the
    /// [module docs](self)); its seq is the last the run covers. For a broker that stores
    /// merged deltas itself ([`DeltaRun::from_stored`]). `priority` is the highest of the
    /// pieces' and `at_ms` the newest piece's, as a merge in the ring sets them.
    pub fn from_run(run: DeltaRun, priority: Priority, at_ms: u64) -> HistoryEntry {
        HistoryEntry {
            seq: run.seq(),
            stamp: stamp(at_ms, priority),
            frame: Bytes::new(),
            merged: Some(Box::new(run)),
        }
    }

    /// Its priority (replay sends critical first).
    pub fn priority(&self) -> Priority {
        Priority::ALL[(self.stamp & 3) as usize % 3]
    }

    /// When it was published (for merged deltas: the newest), ms since the Unix epoch.
    pub fn at_ms(&self) -> u64 {
        self.stamp >> 2
    }

    /// The first seq this entry covers (below [`seq`](Self::seq) for merged deltas).
    pub fn seq_from(&self) -> u64 {
        self.merged.as_ref().map_or(self.seq, |r| r.seq_from())
    }

    /// The frame to replay to a client that holds every seq up to `after`: the frame itself,
    /// or for merged deltas the text after `after`, encoded now. O(1), or O(text) merged.
    pub fn replay_frame(&self, after: u64) -> Bytes {
        match &self.merged {
            None => self.frame.clone(),
            Some(run) => run
                .cut_after(after)
                .unwrap_or_else(|| (**run).clone())
                .encode(),
        }
    }

    /// Keeps only what comes after `after` (the part of a merged entry above it); `None`
    /// when nothing does.
    pub(crate) fn cut_after(self, after: u64) -> Option<HistoryEntry> {
        if self.seq <= after {
            return None;
        }
        match &self.merged {
            Some(run) if run.seq_from() <= after => Some(HistoryEntry {
                merged: run.cut_after(after).map(Box::new),
                ..self
            }),
            _ => Some(self),
        }
    }
}

fn stamp(at_ms: u64, priority: Priority) -> u64 {
    (at_ms.min(u64::MAX >> 2) << 2) | priority as u64
}

/// Seqs a resume asked for that are no longer held: `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The first missing seq.
    pub from: u64,
    /// The last missing seq.
    pub to: u64,
}

/// Bounded history of one user. See the [module docs](self).
#[derive(Debug)]
///
/// The limits and the byte count are held as `u32` (saturating: at most 4 Gi events and
/// 4 GiB per user; an age limit of 2^32 − 1 ms or more means none) so that a ring stays 56
/// bytes: it lives inline in the shard's user table, whose bucket a per-user publish reads,
/// and every 8 bytes there cost the hot path cache lines.
pub struct HistoryRing {
    entries: VecDeque<HistoryEntry>,
    evicted_upto: u64,
    max_len: u32,
    /// `u32::MAX`: no age limit.
    max_age_ms: u32,
    /// Sum of [`entry_bytes`] over `entries` (never above `max_bytes`).
    bytes: u32,
    max_bytes: u32,
}

/// `n` as a `u32`, saturating.
fn sat32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Bytes an entry is counted for beyond its frame: the `HistoryEntry` in the ring, the shared
/// buffer's header and allocator rounding (an estimate, deliberately on the high side).
pub const ENTRY_OVERHEAD: usize = 96;

/// The bytes `e` is counted for.
fn entry_bytes(e: &HistoryEntry) -> usize {
    e.frame.len() + ENTRY_OVERHEAD + e.merged.as_ref().map_or(0, |r| r.heap_bytes())
}

impl HistoryRing {
    /// An empty ring of at most `max_len` events no older than `max_age_ms`, for a user whose
    /// seqs start after `base`.
    pub fn new(max_len: usize, max_age_ms: u64, base: u64) -> HistoryRing {
        HistoryRing {
            entries: VecDeque::new(),
            evicted_upto: base,
            max_len: sat32(max_len as u64),
            max_age_ms: sat32(max_age_ms),
            bytes: 0,
            max_bytes: u32::MAX,
        }
    }

    /// The same ring holding at most `max_bytes` (see the [module docs](self)).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> HistoryRing {
        self.max_bytes = sat32(max_bytes as u64);
        self
    }

    /// Appends an event (its seq must exceed every held seq), evicting the oldest when full.
    /// Returns true when the event was a delta merged into the previous entry.
    pub fn push(&mut self, entry: HistoryEntry) -> bool {
        self.push_with(entry, drop)
    }

    /// [`push`](Self::push), handing evicted frames to `pool` for reuse.
    pub fn push_recycling(&mut self, entry: HistoryEntry, pool: &mut FramePool) -> bool {
        self.push_with(entry, |f| pool.recycle(f))
    }

    /// Merges delta `entry` into the newest entry if that is the previous delta of its
    /// message (see the [module docs](self)). Returns the entry back when it does not merge.
    /// Amortized O(the entry's text): the newest entry's run is extended in place.
    fn try_merge(&mut self, mut entry: HistoryEntry) -> Result<(), HistoryEntry> {
        // The new frame first: it is in cache (just encoded), and a non-delta (every event
        // of a run but its tokens) then costs one prefix compare, without loading the
        // previous entry's frame.
        if entry.merged.is_none() && !delta::is_delta(&entry.frame) {
            return Err(entry);
        }
        let Some(back) = self.entries.back_mut() else {
            return Err(entry);
        };
        if back.seq + 1 != entry.seq_from()
            || back.merged.is_none() && !delta::is_delta(&back.frame)
        {
            return Err(entry);
        }
        let next = match entry.merged.take() {
            Some(r) => *r,
            None => match DeltaRun::from_frame(&entry.frame) {
                Some(r) => r,
                None => return Err(entry),
            },
        };
        let before = entry_bytes(back);
        let mut run = match back.merged.take() {
            Some(r) => r,
            None => match DeltaRun::from_frame(&back.frame) {
                Some(r) => Box::new(r),
                None => {
                    entry.merged = entry.frame.is_empty().then(|| Box::new(next));
                    return Err(entry);
                }
            },
        };
        if !run.can_absorb(&next) {
            if back.frame.is_empty() {
                back.merged = Some(run);
            }
            entry.merged = entry.frame.is_empty().then(|| Box::new(next));
            return Err(entry);
        }
        run.absorb(next, true);
        back.seq = entry.seq;
        back.stamp = stamp(
            back.at_ms().max(entry.at_ms()),
            back.priority().max(entry.priority()),
        );
        back.frame = Bytes::new();
        back.merged = Some(run);
        let after = entry_bytes(back);
        self.bytes = sat32((self.bytes as usize - before + after) as u64);
        Ok(())
    }

    fn push_with(&mut self, entry: HistoryEntry, mut evicted: impl FnMut(Bytes)) -> bool {
        debug_assert!(self.entries.back().is_none_or(|e| e.seq < entry.seq));
        let entry = match self.try_merge(entry) {
            Ok(()) => {
                // The merged entry grew: older entries make room for it (the newest stays
                // unless it alone exceeds the bound; then nothing is kept, as for any event).
                while self.bytes > self.max_bytes && self.entries.len() > 1 {
                    self.evict_front(&mut evicted);
                }
                if self.bytes > self.max_bytes {
                    self.evict_front(&mut evicted);
                }
                return true;
            }
            Err(entry) => entry,
        };
        let size = entry_bytes(&entry);
        if self.max_len == 0 || size > self.max_bytes as usize {
            // Not kept at all: everything before it goes too, so the held seqs stay a
            // contiguous run ending at the newest and a resume sees one gap.
            while !self.entries.is_empty() {
                self.evict_front(&mut evicted);
            }
            self.evicted_upto = entry.seq;
            evicted(entry.frame);
            return false;
        }
        while self.entries.len() >= self.max_len as usize
            || self.bytes as usize + size > self.max_bytes as usize
        {
            self.evict_front(&mut evicted);
        }
        // Within `max_bytes`, a `u32`, after the loop.
        self.bytes += size as u32;
        self.entries.push_back(entry);
        false
    }

    fn evict_front(&mut self, evicted: &mut impl FnMut(Bytes)) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= entry_bytes(&e) as u32;
            self.evicted_upto = self.evicted_upto.max(e.seq);
            evicted(e.frame);
        }
    }

    /// Evicts the oldest event (counted in the gap of a resume from before it). Returns false
    /// when the ring was empty.
    pub fn evict_oldest(&mut self) -> bool {
        let had = !self.entries.is_empty();
        self.evict_front(&mut drop);
        had
    }

    /// The count limit.
    pub fn max_len(&self) -> usize {
        self.max_len as usize
    }

    /// Bytes held (see the [module docs](self)). O(1).
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// Hints the CPU to fetch the oldest entry, which the next push evicts when the ring is
    /// full and the next expiry reads (see [`crate::prefetch`]). Computes its address only;
    /// loads nothing.
    pub(crate) fn prefetch_front(&self) {
        if let Some(e) = self.entries.front() {
            crate::prefetch::prefetch_write(e);
        }
    }

    /// Evicts events older than the age limit.
    pub fn expire(&mut self, now_ms: u64) {
        self.expire_with(now_ms, drop);
    }

    /// [`expire`](Self::expire), handing evicted frames to `pool` for reuse.
    pub fn expire_recycling(&mut self, now_ms: u64, pool: &mut FramePool) {
        self.expire_with(now_ms, |f| pool.recycle(f));
    }

    fn expire_with(&mut self, now_ms: u64, mut evicted: impl FnMut(Bytes)) {
        while self.entries.front().is_some_and(|e| {
            self.max_age_ms != u32::MAX
                && now_ms.saturating_sub(e.at_ms()) > u64::from(self.max_age_ms)
        }) {
            self.evict_front(&mut evicted);
        }
    }

    /// Changes the count limit (per-tier history size), evicting at once if it shrank.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = sat32(max_len as u64);
        while self.entries.len() > self.max_len as usize {
            self.evict_front(&mut drop);
        }
    }

    /// The events after `last_seq`, oldest first, and the gap if some are no longer held.
    pub fn after(
        &self,
        last_seq: u64,
    ) -> (
        Option<Gap>,
        std::collections::vec_deque::Iter<'_, HistoryEntry>,
    ) {
        let gap = (last_seq < self.evicted_upto).then(|| Gap {
            from: last_seq + 1,
            to: self.evicted_upto,
        });
        // A merged entry covering `last_seq` is included: its replay frame is cut after it.
        let start = self.entries.partition_point(|e| e.seq <= last_seq);
        (gap, self.entries.range(start..))
    }

    /// How many events are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// An empty ring with the same limits, for a user whose seqs start after `base`.
    pub(crate) fn emptied(&self, base: u64) -> HistoryRing {
        HistoryRing {
            entries: VecDeque::new(),
            evicted_upto: base,
            max_len: self.max_len,
            max_age_ms: self.max_age_ms,
            bytes: 0,
            max_bytes: self.max_bytes,
        }
    }

    /// The seq of the earliest `agent_started` held at or below `upto` whose run has not
    /// ended (`agent_completed` or `agent_error` of its `run_id`; one without a `run_id`
    /// ends every open run, as AG-UI's `RUN_ERROR` ends the stream's run) by `upto`: where a
    /// replay from `upto` must start instead to begin with the run's start
    /// ([`ConnectOptions::rewind_to_open_run`](crate::conn::shared::ConnectOptions)). At
    /// most 64 runs are tracked (the oldest open ones are forgotten first). O(entries up to
    /// `upto`), one prefix compare each and a scan of the lifecycle frames.
    pub fn open_run_start(&self, upto: u64) -> Option<u64> {
        const STARTED: &[u8] = b"{\"type\":\"agent_started\"";
        const COMPLETED: &[u8] = b"{\"type\":\"agent_completed\"";
        const ERROR: &[u8] = b"{\"type\":\"agent_error\"";
        let run_of = |payload: &[u8]| {
            crate::json::Members::scan_validated(payload)
                .ok()
                .and_then(|m| m.raw("run_id").map(<[u8]>::to_vec))
        };
        let mut open: VecDeque<(u64, Option<Vec<u8>>)> = VecDeque::new();
        for e in self.entries.iter().take_while(|e| e.seq <= upto) {
            let p = crate::frame::payload_of(&e.frame);
            if p.starts_with(STARTED) {
                if open.len() == 64 {
                    open.pop_front();
                }
                open.push_back((e.seq, run_of(p)));
            } else if p.starts_with(COMPLETED) || p.starts_with(ERROR) {
                match run_of(p) {
                    None => open.clear(),
                    run => open.retain(|(_, r)| *r != run),
                }
            }
        }
        open.front().map(|(seq, _)| *seq)
    }

    /// The held entries, oldest first.
    pub(crate) fn iter(&self) -> std::collections::vec_deque::Iter<'_, HistoryEntry> {
        self.entries.iter()
    }

    /// The highest seq no longer held.
    pub fn evicted_upto(&self) -> u64 {
        self.evicted_upto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, at_ms: u64) -> HistoryEntry {
        HistoryEntry::new(seq, Priority::Normal, at_ms, Bytes::new())
    }

    #[test]
    fn count_limit_evicts_oldest_and_reports_gap() {
        let mut h = HistoryRing::new(3, u64::MAX, 0);
        for s in 1..=5 {
            h.push(entry(s, 0));
        }
        let (gap, ev) = h.after(0);
        assert_eq!(gap, Some(Gap { from: 1, to: 2 }));
        assert_eq!(ev.map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        let (gap, ev) = h.after(3);
        assert_eq!(gap, None);
        assert_eq!(ev.map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    }

    #[test]
    fn age_limit_expires_old_events() {
        let mut h = HistoryRing::new(10, 1_000, 100);
        h.push(entry(101, 0));
        h.push(entry(102, 900));
        h.expire(1_500);
        let (gap, ev) = h.after(100);
        assert_eq!(gap, Some(Gap { from: 101, to: 101 }));
        assert_eq!(ev.map(|e| e.seq).collect::<Vec<_>>(), [102]);
    }

    fn sized(seq: u64, len: usize) -> HistoryEntry {
        HistoryEntry {
            frame: Bytes::from(vec![b'x'; len]),
            ..entry(seq, 0)
        }
    }

    #[test]
    fn byte_limit_evicts_oldest_until_the_new_event_fits() {
        let one = 100 + ENTRY_OVERHEAD;
        let mut h = HistoryRing::new(100, u64::MAX, 0).with_max_bytes(3 * one);
        for s in 1..=5 {
            h.push(sized(s, 100));
        }
        assert_eq!(h.bytes(), 3 * one);
        let (gap, ev) = h.after(0);
        assert_eq!(gap, Some(Gap { from: 1, to: 2 }));
        assert_eq!(ev.map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        // One event of two slots' size evicts two.
        h.push(sized(6, 100 + one));
        assert_eq!(h.after(0).1.map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(h.bytes(), 3 * one);
    }

    #[test]
    fn event_over_the_byte_limit_is_not_kept_and_is_a_gap() {
        let mut h = HistoryRing::new(100, u64::MAX, 0).with_max_bytes(1_000);
        h.push(sized(1, 10));
        h.push(sized(2, 5_000));
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
        assert_eq!(h.after(0).0, Some(Gap { from: 1, to: 2 }));
        h.push(sized(3, 10));
        assert_eq!(h.after(2).1.map(|e| e.seq).collect::<Vec<_>>(), [3]);
        assert!(h.evict_oldest());
        assert!(!h.evict_oldest());
        assert_eq!(h.bytes(), 0);
        assert_eq!(h.after(2).0, Some(Gap { from: 3, to: 3 }));
    }

    #[test]
    fn resume_from_before_base_is_a_gap() {
        let h = HistoryRing::new(10, 1_000, 500);
        assert_eq!(h.after(7).0, Some(Gap { from: 8, to: 500 }));
        assert_eq!(h.after(500).0, None);
    }

    #[test]
    fn open_run_start_is_the_start_of_a_run_not_ended_by_the_cursor() {
        let ev = |seq: u64, json: &str| {
            HistoryEntry::new(
                seq,
                Priority::Critical,
                0,
                crate::frame::Frame::text(json.as_bytes()).into_bytes(),
            )
        };
        let mut h = HistoryRing::new(100, u64::MAX, 0);
        h.push(ev(1, r#"{"type":"agent_started","seq":1,"run_id":"a"}"#));
        h.push(ev(2, r#"{"type":"agent_completed","seq":2,"run_id":"a"}"#));
        h.push(ev(3, r#"{"type":"agent_started","seq":3,"run_id":"b"}"#));
        h.push(ev(4, r#"{"type":"tool_executing","seq":4,"run_id":"b"}"#));
        h.push(ev(5, r#"{"type":"agent_error","seq":5}"#));
        assert_eq!(h.open_run_start(0), None);
        assert_eq!(h.open_run_start(1), Some(1));
        assert_eq!(h.open_run_start(2), None, "run a ended");
        assert_eq!(h.open_run_start(4), Some(3));
        assert_eq!(
            h.open_run_start(5),
            None,
            "an error without a run ends every run"
        );
    }
}
