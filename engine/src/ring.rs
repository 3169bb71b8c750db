//! The bounded priority ring of one connection: what a full queue gives up, and in which order.
//!
//! Frames leave in the order they entered (FIFO); priorities matter only when the ring is full.
//! Then, for an incoming frame:
//!
//! 1. **Coalesce.** An `agent_thinking` (low, with a run) replaces the oldest queued low frame
//!    of the same run: the old one is removed and the new one appended, so order is kept and
//!    the client sees the newest thought. Counted as a coalesce.
//! 2. **Evict lower.** Otherwise the oldest queued frame of the lowest priority *strictly
//!    below* the incoming one is removed and the incoming appended. Counted as a drop of the
//!    evicted frame's priority.
//! 3. **Drop incoming.** Otherwise (everything queued is at least as important) a low or
//!    normal incoming frame is dropped. Counted as a drop of its priority.
//! 4. **Overflow.** A critical frame that cannot be queued is never dropped silently:
//!    [`PushOutcome::Overflow`] tells the caller to close the connection (code 1013) so the
//!    client reconnects and resumes from history.
//!
//! The ring never holds more than its capacity; pushing is O(1) while not full and O(n) (one
//! scan) when full, which bounds the cost of a slow consumer to the ring size. The backing
//! buffer is allocated on first use and then reused: a busy connection does not allocate.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

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
}

/// What [`PriorityRing::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Appended; nothing was lost.
    Queued,
    /// Appended after removing an older frame of the same run (a low frame).
    Coalesced,
    /// Appended after evicting the oldest frame of this (lower) priority.
    Evicted(Priority),
    /// Not queued: the incoming frame of this priority was dropped.
    Dropped(Priority),
    /// Not queued: a critical frame found no room. The caller must close the connection.
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
        let lowest = self
            .items
            .iter()
            .enumerate()
            .filter(|(_, q)| q.priority < item.priority)
            .min_by_key(|(i, q)| (q.priority, *i))
            .map(|(i, q)| (i, q.priority));
        match lowest {
            Some((i, p)) => {
                self.items.remove(i);
                self.items.push_back(item);
                PushOutcome::Evicted(p)
            }
            None if item.priority == Priority::Critical => PushOutcome::Overflow,
            None => PushOutcome::Dropped(item.priority),
        }
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

    /// Removes the oldest frame.
    pub fn pop(&mut self) -> Option<Queued> {
        self.items.pop_front()
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
