//! The fan-out path allocates nothing per recipient: a counting global allocator sees the same
//! handful of allocations for a broadcast to 2,000 connections as to 20,000.
//!
//! This binary holds a single test so that no other test allocates concurrently.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use agentcast_engine::{ConnectOptions, Connection, EventKind, Hub, Target};
use common::*;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn broadcast_allocs(hub: &Hub, conns: &mut [Connection]) -> u64 {
    let e = event(EventKind::ToolCompleted, "r", r#"{"k":"v"}"#);
    hub.sync_blocking(false).unwrap();
    let before = ALLOCS.load(Ordering::Relaxed);
    let r = hub.publish(Target::Broadcast, e).unwrap().wait().unwrap();
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(r.connections, conns.len());
    // Empty the hand-off queues for the next round (outside the measured window).
    let mut sink = Vec::with_capacity(8);
    for c in conns {
        sink.clear();
        c.drain_into(&mut sink, 8);
    }
    after - before
}

#[test]
fn broadcast_allocations_do_not_grow_with_recipients() {
    let hub = hub(2);
    let mut conns: Vec<Connection> = (0..2_000)
        .map(|i| {
            hub.connect(user(&format!("a{i}")), ConnectOptions::default())
                .wait()
                .unwrap()
        })
        .collect();
    // Warm up (first use of queues, counters).
    broadcast_allocs(&hub, &mut conns);
    let small = broadcast_allocs(&hub, &mut conns);
    conns.extend((0..18_000).map(|i| {
        hub.connect(user(&format!("b{i}")), ConnectOptions::default())
            .wait()
            .unwrap()
    }));
    broadcast_allocs(&hub, &mut conns);
    let large = broadcast_allocs(&hub, &mut conns);
    println!("allocations per broadcast: {small} for 2,000 recipients, {large} for 20,000");
    assert!(large <= 32, "{large} allocations for 20,000 recipients");
    assert!(
        large <= small + 4,
        "allocations grew with recipients: {small} -> {large}"
    );
}
