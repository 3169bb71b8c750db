//! The delivery fast path: one frame queued to a list of connections (their rings, then
//! their hand-off queues), with the wake-ups batched behind one fence. Shared by the owner
//! mode's publish, the cluster mode's delivery and channel and broadcast fan-out.

use std::sync::Arc;

use bytes::Bytes;

use crate::event::Priority;
use crate::ring::{PushOutcome, Queued};
use crate::slots::Slots;

use super::{ConnEntry, Tally};

/// One frame on its way to connections, and how their rings treat it.
#[derive(Clone, Copy)]
pub(super) struct Parcel<'a> {
    pub(super) frame: &'a Bytes,
    pub(super) priority: Priority,
    pub(super) coalesce: Option<&'a Arc<str>>,
    pub(super) born_us: u64,
}

/// Queues `parcel` to each connection of `keys`; overflowed ones are remembered in
/// `overflowed` and closed by [`Shard::close_overflowed`] afterwards.
///
/// A free function over the fields it writes, so the caller can pass a key list that lives in
/// the shard's user or channel index without taking it out and putting it back (two hash
/// lookups, and a key clone for channels, per publish).
pub(super) fn deliver(
    conns: &mut Slots<ConnEntry>,
    tally: &mut Tally,
    backlog: &mut usize,
    overflowed: &mut Vec<usize>,
    keys: &[usize],
    parcel: Parcel<'_>,
) -> usize {
    let mut delivered = 0;
    let mut wakes = Wakes::new();
    for &key in keys {
        let Some(c) = conns.get_mut(key) else {
            continue;
        };
        match push_frame(
            c,
            parcel.frame,
            parcel.priority,
            parcel.coalesce,
            tally,
            backlog,
            parcel.born_us,
        ) {
            Push::Ok => {
                delivered += 1;
                wakes.add(key, conns);
            }
            Push::Lost => {}
            Push::Close => overflowed.push(key),
        }
    }
    wakes.flush(conns);
    delivered
}

pub(super) enum Push {
    /// Queued (possibly after coalescing or evicting an older frame).
    Ok,
    /// The incoming frame was dropped by the ring policy.
    Lost,
    /// A critical frame overflowed: the connection must be closed.
    Close,
}

/// How many connections one `fence(SeqCst)` covers before they are notified.
const WAKE_BATCH: usize = 32;

/// Connections pushed to since the last fence: notified ([`ConnShared::notify`]) after one
/// `fence(SeqCst)` for all of them. A fence (like any read-modify-write on x86) waits for
/// every earlier store to finish; per recipient it would serialize the cache misses the
/// fan-out loop overlaps, so the loop pays it once per batch instead.
pub(super) struct Wakes {
    keys: [usize; WAKE_BATCH],
    len: usize,
}

impl Wakes {
    pub(super) fn new() -> Wakes {
        Wakes {
            keys: [0; WAKE_BATCH],
            len: 0,
        }
    }

    #[inline]
    pub(super) fn add(&mut self, key: usize, conns: &Slots<ConnEntry>) {
        self.keys[self.len] = key;
        self.len += 1;
        if self.len == WAKE_BATCH {
            self.flush(conns);
        }
    }

    pub(super) fn flush(&mut self, conns: &Slots<ConnEntry>) {
        if self.len == 0 {
            return;
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        for &key in &self.keys[..self.len] {
            if let Some(c) = conns.get(key) {
                c.shared.notify();
            }
        }
        self.len = 0;
    }
}

/// Queues one frame for one connection: the per-recipient fast path.
pub(super) fn push_frame(
    c: &mut ConnEntry,
    frame: &Bytes,
    priority: Priority,
    coalesce: Option<&Arc<str>>,
    tally: &mut Tally,
    backlog: &mut usize,
    born_us: u64,
) -> Push {
    use std::sync::atomic::Ordering::Relaxed;
    if c.shared.publish_stamp.load(Relaxed) == 0 {
        c.shared.publish_stamp.store(born_us, Relaxed);
    }
    if c.ring.is_empty() && handoff_push(c, frame.clone()).is_ok() {
        tally.delivered += 1;
        tally.handed += 1;
        return Push::Ok;
    }
    let before = c.ring.len();
    let outcome = c
        .ring
        .push(Queued::new(frame.clone(), priority).coalescing(coalesce.cloned()));
    *backlog = *backlog + c.ring.len() - before;
    let result = match outcome {
        PushOutcome::Queued => Push::Ok,
        PushOutcome::Coalesced => {
            tally.coalesced[Priority::Low as usize] += 1;
            Push::Ok
        }
        PushOutcome::Merged => {
            tally.merged += 1;
            Push::Ok
        }
        PushOutcome::Evicted(p) => {
            tally.dropped[p as usize] += 1;
            Push::Ok
        }
        PushOutcome::Dropped(p) => {
            tally.dropped[p as usize] += 1;
            return Push::Lost;
        }
        PushOutcome::Overflow => return Push::Close,
    };
    tally.delivered += 1;
    // Release pairs with the transport's AcqRel swap in `Connection::drain_into`.
    c.shared
        .backlogged
        .store(true, std::sync::atomic::Ordering::Release);
    result
}

/// Pushes to a connection's hand-off queue.
#[allow(unsafe_code)]
pub(super) fn handoff_push(c: &mut ConnEntry, frame: Bytes) -> Result<(), Bytes> {
    // SAFETY: only the shard's worker pushes to its connections' queues, and it holds the
    // entry mutably: one producer at a time.
    let pushed = unsafe { c.shared.handoff.push(frame) };
    if pushed.is_ok() {
        c.next_slot = c.shared.handoff.next_slot();
    }
    pushed
}

/// Moves ring frames into the hand-off queue while it has room. Returns how many moved.
pub(super) fn refill(c: &mut ConnEntry) -> usize {
    let mut moved = 0;
    // The worker is the queue's only producer, so room seen here stays room until the push.
    while !c.shared.handoff.is_full() {
        let Some(q) = c.ring.pop() else {
            break;
        };
        if let Err(frame) = handoff_push(c, q.frame) {
            c.ring.push_front(Queued { frame, ..q });
            break;
        }
        moved += 1;
    }
    if !c.ring.is_empty() {
        c.shared
            .backlogged
            .store(true, std::sync::atomic::Ordering::Release);
    }
    if moved > 0 || !c.ring.is_empty() {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        c.shared.notify();
    }
    moved
}
