//! The bounded priority ring of one connection: what a full queue gives up, and in which order.
//!
//! Frames leave in the order they entered (FIFO); priorities matter only when the ring is full.
//! Then, for an incoming frame:
//!
//! 1. **Coalesce.** An `agent_thinking` (low, with a run) replaces the oldest queued low frame
//!    of the same run: the old one is removed and the new one appended, so order is kept and
//!    the client sees the newest thought. Counted as a coalesce.
//! 2. **Merge.** A `message_delta` whose message's previous delta is the newest queued frame
//!    is appended to it (one frame covering both seqs, see [`crate::delta`]). Counted as a
//!    merge.
//! 3. **Evict lower.** Otherwise the oldest queued frame of the lowest priority *strictly
//!    below* the incoming one is removed and the incoming appended. Counted as a drop of the
//!    evicted frame's priority. Message events (`message_started`, `message_delta`,
//!    `message_completed`) are never evicted, and rank above the droppable frames of their
//!    priority: a delta evicts a queued low or normal frame.
//! 4. **Compact.** Otherwise, if two adjacent queued frames are deltas of one message, they
//!    are merged to make room and the incoming appended. Counted as a merge.
//! 5. **Drop incoming.** Otherwise (everything queued is at least as important) a low or
//!    normal incoming frame that is not a message event is dropped. Counted as a drop of its
//!    priority.
//! 6. **Overflow.** A critical frame or a message event that cannot be queued is never
//!    dropped silently: [`PushOutcome::Overflow`] tells the caller to close the connection
//!    (code 1013) so the client reconnects and resumes from history.
//!
//! The ring never holds more than its capacity; pushing is O(1) while not full and O(n) (one
//! scan) when full, which bounds the cost of a slow consumer to the ring size. The backing
//! buffer is allocated on first use and then reused: a busy connection does not allocate.
//! A merged frame is encoded when it leaves ([`PriorityRing::pop`]), so merging a token into
//! a queued run costs the token, not the run.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::delta::{self, DeltaRun};
use crate::event::Priority;

/// A frame waiting in a ring.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The wire bytes.
    pub frame: Bytes,
    /// Its priority.
    pub priority: Priority,
    /// For coalescable frames (`agent_thinking`): the run whose newer frame replaces this one.
    pub coalesce_run: Option<Arc<str>>,
    /// Deltas merged into this one: `frame` is then the first of them, and the frame that
    /// leaves is encoded from the run ([`PriorityRing::pop`]).
    pub(crate) merged: Option<Box<DeltaRun>>,
}

impl Queued {
    /// A frame of `priority`, not coalescable.
    pub fn new(frame: Bytes, priority: Priority) -> Queued {
        Queued {
            frame,
            priority,
            coalesce_run: None,
            merged: None,
        }
    }

    /// The same frame, replaced by a newer low frame of `run` when the ring is full.
    pub fn coalescing(mut self, run: Option<Arc<str>>) -> Queued {
        self.coalesce_run = run;
        self
    }

    /// Never dropped nor evicted (a message event).
    fn lossless(&self) -> bool {
        delta::is_message(&self.frame)
    }

    /// The eviction rank: droppable frames by priority, a message event just above the
    /// droppable frames of its priority.
    fn rank(&self) -> u8 {
        self.priority as u8 * 2 + u8::from(self.lossless())
    }

    /// Whether the ring may evict this frame.
    fn evictable(&self) -> bool {
        self.priority != Priority::Critical && !self.lossless()
    }

    /// Appends delta `next` to this queued delta if they continue one message.
    fn merge(&mut self, next: &Queued) -> bool {
        if !delta::is_delta(&self.frame) || !delta::is_delta(&next.frame) {
            return false;
        }
        let run_next = match &next.merged {
            Some(r) => (**r).clone(),
            None => match DeltaRun::from_frame(&next.frame) {
                Some(r) => r,
                None => return false,
            },
        };
        if self.merged.is_none() {
            match DeltaRun::from_frame(&self.frame) {
                Some(r) => self.merged = Some(Box::new(r)),
                None => return false,
            }
        }
        let Some(run) = self.merged.as_mut() else {
            return false;
        };
        if !run.can_absorb(&run_next) {
            return false;
        }
        run.absorb(run_next, false);
        true
    }
}

/// What [`PriorityRing::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Appended; nothing was lost.
    Queued,
    /// Appended after removing an older frame of the same run (a low frame).
    Coalesced,
    /// Merged into a queued delta of the same message, or appended after two queued deltas
    /// were merged to make room.
    Merged,
    /// Appended after evicting the oldest frame of this (lower) priority.
    Evicted(Priority),
    /// Not queued: the incoming frame of this priority was dropped.
    Dropped(Priority),
    /// Not queued: a critical frame or a message event found no room. The caller must close
    /// the connection.
    Overflow,
}

/// A bounded FIFO with the overflow policy of the [module docs](self).
#[derive(Debug)]
pub struct PriorityRing {
    items: VecDeque<Queued>,
    capacity: usize,
}

impl PriorityRing {
    /// An empty ring holding at most `capacity` frames (at least 1). Allocates nothing yet.
    pub fn new(capacity: usize) -> PriorityRing {
        PriorityRing {
            items: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// How many frames are queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues `item` under the overflow policy. See [`PushOutcome`].
    pub fn push(&mut self, item: Queued) -> PushOutcome {
        if self.items.len() < self.capacity {
            if self.items.capacity() == 0 {
                self.items.reserve_exact(self.capacity.min(64));
            }
            self.items.push_back(item);
            return PushOutcome::Queued;
        }
        if let Some(run) = &item.coalesce_run {
            let same_run = self.items.iter().position(|q| {
                q.priority == Priority::Low
                    && q.coalesce_run
                        .as_ref()
                        .is_some_and(|r| Arc::ptr_eq(r, run) || r == run)
            });
            if let Some(i) = same_run {
                self.items.remove(i);
                self.items.push_back(item);
                return PushOutcome::Coalesced;
            }
        }
        if let Some(last) = self.items.back_mut()
            && last.merge(&item)
        {
            return PushOutcome::Merged;
        }
        let rank = item.rank();
        let lowest = self
            .items
            .iter()
            .enumerate()
            .filter(|(_, q)| q.evictable() && q.rank() < rank)
            .min_by_key(|(i, q)| (q.priority, *i))
            .map(|(i, q)| (i, q.priority));
        if let Some((i, p)) = lowest {
            self.items.remove(i);
            self.items.push_back(item);
            return PushOutcome::Evicted(p);
        }
        if self.compact() {
            self.items.push_back(item);
            return PushOutcome::Merged;
        }
        if item.priority == Priority::Critical || item.lossless() {
            PushOutcome::Overflow
        } else {
            PushOutcome::Dropped(item.priority)
        }
    }

    /// Merges the first pair of adjacent queued deltas of one message. O(n).
    fn compact(&mut self) -> bool {
        for i in 1..self.items.len() {
            if !delta::is_delta(&self.items[i - 1].frame) || !delta::is_delta(&self.items[i].frame)
            {
                continue;
            }
            let next =
                std::mem::replace(&mut self.items[i], Queued::new(Bytes::new(), Priority::Low));
            if self.items[i - 1].merge(&next) {
                self.items.remove(i);
                return true;
            }
            self.items[i] = next;
        }
        false
    }

    /// Appends without the capacity check (history replay on connect, bounded by the history
    /// size). Later pushes see the ring as full until it drains below capacity.
    pub fn push_unbounded(&mut self, item: Queued) {
        self.items.push_back(item);
    }

    /// Puts a frame back at the front (a hand-off that found no room after all).
    pub fn push_front(&mut self, item: Queued) {
        self.items.push_front(item);
    }

    /// Removes the oldest frame (a merged one encoded now).
    pub fn pop(&mut self) -> Option<Queued> {
        let mut q = self.items.pop_front()?;
        if let Some(run) = q.merged.take() {
            q.frame = run.encode();
        }
        Some(q)
    }

    /// Removes every frame, keeping the buffer.
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// The queued frames, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.items.iter()
    }
}
