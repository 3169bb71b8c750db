//! The hand-off queue between a shard worker and one connection's transport: a bounded
//! single-producer, single-consumer ring of frames.
//!
//! # Why not `crossbeam_queue::ArrayQueue`
//!
//! Fan-out to 100,000 connections is bound by cache misses, one group per recipient. An
//! `ArrayQueue` spreads a push over four cache lines: its head and tail each sit on their own
//! 128-byte padded line, its length and buffer pointer on a third, and the slot in a separate
//! allocation. It also pays a compare-and-swap per push to stay safe for many producers,
//! which the engine never has: each connection has exactly one producer (its shard's worker)
//! and one consumer (the transport holding the [`Connection`](crate::Connection)).
//!
//! This ring keeps both indices in the same 64-byte line as the rest of the connection's
//! shared state (see [`ConnShared`](crate::conn::ConnShared)), so a push touches two lines:
//! that one and the slot. Both addresses are known before the push, so the fan-out loop
//! prefetches them a few recipients ahead ([`Handoff::next_slot`]). Producer and consumer
//! need only a Release store each, no read-modify-write.
//!
//! # Safety contract
//!
//! [`push`](Handoff::push) may be called by one thread at a time, and so may
//! [`pop_into`](Handoff::pop_into). The engine upholds this by construction: only the worker
//! that owns the connection's entry pushes, and only `Connection::drain_into`, which takes
//! `&mut Connection` (a handle that is not `Clone`), pops.
//!
//! # Checked
//!
//! The unit tests below, including one with the producer and consumer on two threads, pass
//! under Miri, which reports undefined behaviour and data races on the slots:
//! `cargo +nightly miri test -p agentcast-engine --lib handoff`. The cross-thread wake-up
//! protocol around the queue is covered by `engine/tests/no_lost_wakeups.rs` and
//! `engine/tests/handoff_stress.rs`, and the engine as a whole by the `engine_model` fuzz
//! target.

#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

type Slot = UnsafeCell<MaybeUninit<Bytes>>;

/// A bounded SPSC ring of [`Bytes`]. See the [module docs](self).
///
/// `head` and `tail` count pops and pushes since creation, wrapping at `u32::MAX`; the
/// capacity is a power of two, and the slot of count `i` is `i & (capacity - 1)`.
/// `tail - head` (wrapping) is the length, never above the capacity.
#[repr(C)]
pub(crate) struct Handoff {
    /// Pushes so far. Written only by the producer (Release: the slot it filled is visible to
    /// a consumer that loads the new value with Acquire).
    tail: AtomicU32,
    /// Pops so far. Written only by the consumer (Release: its reads of the slots are done
    /// before a producer that loads the new value with Acquire reuses them).
    head: AtomicU32,
    slots: Box<[Slot]>,
}

// SAFETY: the slots are only reached through `push` and `pop_into`, whose contract (one
// producer, one consumer, each at a time) and index protocol hand each slot to exactly one
// side at a time; `Bytes` is `Send + Sync`.
unsafe impl Sync for Handoff {}
// SAFETY: as above; moving the ring moves owned `Bytes`, which are `Send`.
unsafe impl Send for Handoff {}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Handoff {
    /// An empty ring of `capacity` slots, rounded up to a power of two (at least 1).
    pub(crate) fn new(capacity: usize) -> Handoff {
        let capacity = capacity.clamp(1, 1 << 30).next_power_of_two();
        Handoff {
            tail: AtomicU32::new(0),
            head: AtomicU32::new(0),
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Frames queued. Exact when called by the producer or the consumer; a snapshot otherwise.
    pub(crate) fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        tail.wrapping_sub(head) as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    fn slot(&self, count: u32) -> &Slot {
        // The length is a power of two: the mask keeps the index in bounds (and the bounds
        // check below is folded away when the compiler sees it).
        &self.slots[count as usize & (self.slots.len() - 1)]
    }

    /// The address of the slot the next push fills, for a prefetch hint. Exact when called
    /// by the producer.
    pub(crate) fn next_slot(&self) -> usize {
        self.slot(self.tail.load(Ordering::Relaxed)).get() as usize
    }

    /// Queues `frame`, or gives it back when the ring is full.
    ///
    /// # Safety
    ///
    /// No other thread may call `push` on this ring concurrently.
    pub(crate) unsafe fn push(&self, frame: Bytes) -> Result<(), Bytes> {
        // Only this (the single producer) writes `tail`.
        let tail = self.tail.load(Ordering::Relaxed);
        // Acquire: the consumer finished reading every slot it has released.
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) as usize >= self.slots.len() {
            return Err(frame);
        }
        // SAFETY: slot `tail` is outside `head..tail`, so the consumer does not read it, and
        // we are the only producer; it holds no live value (it was never written, or the
        // consumer moved its value out before releasing it).
        unsafe { (*self.slot(tail).get()).write(frame) };
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Moves up to `max` frames, oldest first, to `out`; returns how many.
    ///
    /// # Safety
    ///
    /// No other thread may call `pop_into` on this ring concurrently.
    #[inline]
    pub(crate) unsafe fn pop_into(&self, out: &mut Vec<Bytes>, max: usize) -> usize {
        // Only this (the single consumer) writes `head`.
        let head = self.head.load(Ordering::Relaxed);
        // Acquire: every slot in `head..tail` was written before `tail` was published.
        let tail = self.tail.load(Ordering::Acquire);
        let n = (tail.wrapping_sub(head) as usize).min(max);
        out.reserve(n);
        for i in 0..n as u32 {
            // SAFETY: slots in `head..tail` hold values written by the producer (Acquire
            // above), which will not touch them until `head` moves past them; we are the only
            // consumer, and each value is moved out exactly once because `head` then advances.
            out.push(unsafe { (*self.slot(head.wrapping_add(i)).get()).assume_init_read() });
        }
        self.head
            .store(head.wrapping_add(n as u32), Ordering::Release);
        n
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        let head = *self.head.get_mut();
        let tail = *self.tail.get_mut();
        for i in 0..tail.wrapping_sub(head) {
            // SAFETY: `&mut self`: no producer or consumer is left; slots in `head..tail`
            // hold values not yet moved out, each dropped once here.
            unsafe { (*self.slot(head.wrapping_add(i)).get()).assume_init_drop() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_wraps_and_bounds() {
        let q = Handoff::new(3);
        assert_eq!(q.capacity(), 4);
        let mut out = Vec::new();
        let mut next = 0u32;
        let mut expect = 0u32;
        for round in 0..1000 {
            let pushes = round % 5;
            for _ in 0..pushes {
                let b = Bytes::from(next.to_le_bytes().to_vec());
                // SAFETY: single-threaded test.
                match unsafe { q.push(b) } {
                    Ok(()) => next += 1,
                    Err(_) => assert_eq!(q.len(), 4),
                }
            }
            assert!(q.len() <= 4);
            out.clear();
            // SAFETY: single-threaded test.
            let n = unsafe { q.pop_into(&mut out, round as usize % 3) };
            assert_eq!(n, out.len());
            for b in &out {
                assert_eq!(b[..], expect.to_le_bytes());
                expect += 1;
            }
        }
    }

    #[test]
    fn drops_what_is_left() {
        let b = Bytes::from(vec![1u8; 100]);
        let q = Handoff::new(4);
        for _ in 0..3 {
            // SAFETY: single-threaded test.
            unsafe { q.push(b.clone()) }.expect("room");
        }
        drop(q);
        // Every clone was dropped: `b` is unique again, so it converts back without copying.
        assert!(b.is_unique());
    }

    /// A producer and a consumer on two threads. Under Miri (`cargo +nightly miri test -p
    /// agentcast-engine --lib handoff`) this also checks the slot accesses for data races,
    /// i.e. that the Acquire/Release pairs order them.
    #[test]
    fn two_threads_fifo() {
        let n: u32 = if cfg!(miri) { 300 } else { 200_000 };
        let q = std::sync::Arc::new(Handoff::new(4));
        let producer = {
            let q = std::sync::Arc::clone(&q);
            std::thread::spawn(move || {
                for i in 0..n {
                    let mut b = Bytes::from(i.to_le_bytes().to_vec());
                    loop {
                        // SAFETY: this thread is the only producer.
                        match unsafe { q.push(b) } {
                            Ok(()) => break,
                            Err(back) => {
                                b = back;
                                std::thread::yield_now();
                            }
                        }
                    }
                }
            })
        };
        let mut out = Vec::new();
        let mut next = 0u32;
        while next < n {
            out.clear();
            // SAFETY: this thread is the only consumer.
            if unsafe { q.pop_into(&mut out, 3) } == 0 {
                std::thread::yield_now();
            }
            for b in &out {
                assert_eq!(b[..], next.to_le_bytes());
                next += 1;
            }
        }
        producer.join().unwrap();
        assert!(q.is_empty());
    }

    #[test]
    fn indices_wrap_past_u32() {
        let q = Handoff::new(2);
        q.head.store(u32::MAX - 1, Ordering::Relaxed);
        q.tail.store(u32::MAX - 1, Ordering::Relaxed);
        let mut out = Vec::new();
        for i in 0..10u8 {
            // SAFETY: single-threaded test.
            unsafe { q.push(Bytes::from(vec![i])) }.expect("room");
            // SAFETY: single-threaded test.
            assert_eq!(unsafe { q.pop_into(&mut out, 8) }, 1);
        }
        let got: Vec<u8> = out.iter().map(|b| b[0]).collect();
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
    }
}
