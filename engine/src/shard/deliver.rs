//! The delivery fast path: one frame written to, or queued for, a list of connections, with
//! the wake-ups batched behind one fence. Shared by the owner mode's publish, the cluster
//! mode's delivery and channel and broadcast fan-out.
//!
//! Per recipient, in order of preference:
//! 1. **Written directly** ([`crate::sink`]): the transport gave a sink, released the socket,
//!    and nothing is queued before the frame. One non-blocking write; no queue, no wake-up.
//! 2. **Handed**: pushed to the hand-off queue (the ring is empty and the queue has room);
//!    the transport is woken.
//! 3. **Queued** in the ring, where the overflow policy applies.

use std::sync::Arc;

use bytes::Bytes;

use crate::conn::shared::ConnId;
use crate::event::Priority;
use crate::ring::{PushOutcome, Queued};
use crate::sink::{self, SocketSink};
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
    mut deferred: Option<&mut Vec<(usize, ConnId)>>,
) -> usize {
    let mut delivered = 0;
    let mut wakes = Wakes::new();
    let mut direct = Direct::default();
    for &key in keys {
        let Some(c) = conns.get_mut(key) else {
            continue;
        };
        match push_frame(
            key,
            deferred.as_deref_mut(),
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
            Push::Written => {
                delivered += 1;
                direct.add(c);
            }
            Push::Deferred => delivered += 1,
            Push::Lost => {}
            Push::Close => overflowed.push(key),
        }
    }
    wakes.flush(conns);
    direct.finish(parcel.born_us);
    delivered
}

/// Direct writes of one delivery: told to a sink once at its end ([`SocketSink::written`]).
#[derive(Default)]
pub(super) struct Direct {
    frames: u64,
    sink: Option<Arc<dyn SocketSink>>,
}

impl Direct {
    #[inline]
    pub(super) fn add(&mut self, c: &ConnEntry) {
        self.frames += 1;
        if self.sink.is_none() {
            self.sink.clone_from(&c.sink);
        }
    }

    pub(super) fn finish(self, born_us: u64) {
        if let Some(sink) = self.sink {
            sink.written(self.frames, born_us);
        }
    }
}

pub(super) enum Push {
    /// Queued (possibly after coalescing or evicting an older frame): wake the transport.
    Ok,
    /// Written to the socket whole by this worker (see [`crate::sink`]): nothing to wake.
    Written,
    /// To be written directly after the command's reply ([`Shard::write_deferred`]).
    Deferred,
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

/// Queues one frame for one connection: the per-recipient fast path. With `deferred`, a
/// connection the frame could be written to directly is only noted there (see
/// [`Shard::write_deferred`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn push_frame(
    key: usize,
    deferred: Option<&mut Vec<(usize, ConnId)>>,
    c: &mut ConnEntry,
    frame: &Bytes,
    priority: Priority,
    coalesce: Option<&Arc<str>>,
    tally: &mut Tally,
    backlog: &mut usize,
    born_us: u64,
) -> Push {
    use std::sync::atomic::Ordering::Relaxed;
    // The writer byte sits in the shared line this push touches anyway (and the fan-out loop
    // prefetched); only a connection whose transport released the socket reads `sink`, so
    // the embedded path (no sink, never released) pays no extra cache line per recipient.
    if c.ring.is_empty() && c.shared.writer.load(Relaxed) == sink::FREE && c.sink.is_some() {
        if let Some(keys) = deferred {
            if may_write_direct(c) {
                keys.push((key, c.id));
                tally.delivered += 1;
                return Push::Deferred;
            }
        } else {
            match write_direct(c, frame) {
                Some(true) => {
                    tally.delivered += 1;
                    tally.direct_writes += 1;
                    return Push::Written;
                }
                Some(false) => {
                    // Its rest (or all of it) is the only frame in the hand-off queue.
                    if c.shared.publish_stamp.load(Relaxed) == 0 {
                        c.shared.publish_stamp.store(born_us, Relaxed);
                    }
                    tally.delivered += 1;
                    tally.handed += 1;
                    return Push::Ok;
                }
                None => {}
            }
        }
    }
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

/// Whether [`write_direct`] would take the socket now: nothing queued, no close, released by
/// the transport (a hint: the transport may claim it before the write).
#[inline]
fn may_write_direct(c: &ConnEntry) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let shared = &*c.shared;
    shared.handoff.is_empty()
        && shared.close.load(Relaxed) == 0
        && shared.writer.load(Relaxed) == sink::FREE
}

/// Writes a frame noted by [`push_frame`] with `deferred`: directly when the socket is still
/// free, else (the transport claimed it meanwhile) into the hand-off queue, which is still
/// empty — nothing was queued to the connection since it was noted. Returns whether it was
/// written whole.
pub(super) fn write_noted(c: &mut ConnEntry, frame: &Bytes, born_us: u64) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match write_direct(c, frame) {
        Some(true) => true,
        Some(false) => {
            if c.shared.publish_stamp.load(Relaxed) == 0 {
                c.shared.publish_stamp.store(born_us, Relaxed);
            }
            false
        }
        None => {
            hand_noted(c, frame, born_us);
            false
        }
    }
}

/// Hands a frame noted by [`push_frame`] to the connection's queue (still empty: nothing was
/// queued to it since it was noted); the caller wakes the transport.
pub(super) fn hand_noted(c: &mut ConnEntry, frame: &Bytes, born_us: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    if c.shared.publish_stamp.load(Relaxed) == 0 {
        c.shared.publish_stamp.store(born_us, Relaxed);
    }
    if let Err(frame) = handoff_push(c, frame.clone()) {
        // Not reached (the queue was empty); kept safe all the same.
        c.ring
            .push_unbounded(Queued::new(frame, Priority::Critical));
        c.shared
            .backlogged
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Writes `frame` to the connection's socket when the transport released it and nothing is
/// queued (the ring is empty: the caller checked). `None`: the socket was not free, queue as
/// usual. `Some(true)`: written whole. `Some(false)`: the socket took part of it or nothing,
/// and the rest is now the only frame in the hand-off queue (the caller wakes the transport).
///
/// The queue is checked before the socket is taken, and that suffices: only this worker
/// pushes to it, and the transport pops only while it holds the socket, so a queue found
/// empty with the socket free stays empty until this write is done.
#[inline]
fn write_direct(c: &mut ConnEntry, frame: &Bytes) -> Option<bool> {
    use std::sync::atomic::Ordering::Relaxed;
    let shared = &*c.shared;
    // The close code is stored only by this worker: after it, the transport owns the rest.
    if !shared.handoff.is_empty() || shared.close.load(Relaxed) != 0 {
        return None;
    }
    let sink = c.sink.as_deref()?;
    if !sink::worker_begin(&shared.writer) {
        return None;
    }
    let (rest, broken) = match sink.try_write(frame) {
        Ok(n) if n >= frame.len() => {
            sink::worker_end(&shared.writer);
            return Some(true);
        }
        Ok(n) => (frame.slice(n..), false),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (frame.clone(), false),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => (frame.clone(), false),
        // A broken socket: the transport finds out on its next read or write and ends the
        // connection; the frame goes its way meanwhile, and no more direct writes are tried.
        Err(_) => (frame.clone(), true),
    };
    let pushed = handoff_push(c, rest);
    debug_assert!(pushed.is_ok(), "the hand-off queue was empty");
    if broken {
        c.sink = None;
    }
    sink::worker_end(&c.shared.writer);
    Some(false)
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
