//! Direct writes: a transport may hand its shard a [`SocketSink`], and the shard's worker then
//! writes a frame to the socket itself when nothing is queued before it, instead of queuing
//! it and waking the transport's task.
//!
//! # Why
//!
//! A frame handed to a transport costs, per recipient, a push into its hand-off queue, a
//! wake-up of its task (a futex or eventfd write when the I/O thread was parked), a poll, a
//! drain and the task's own `writev`. Only the write is the kernel's floor. When the
//! connection is idle and its socket has room — the usual case of a broadcast or a per-user
//! event — the worker can make that one write and skip the rest: no task is woken at all.
//!
//! # The protocol
//!
//! Who may write to the socket is one byte in the connection's shared line
//! (`ConnShared::writer`):
//!
//! - `TRANSPORT` (the initial state): the transport owns the socket. It writes what it drained
//!   and its own frames (welcome, pongs, pings, errors, the close). The worker queues.
//! - `FREE`: the transport holds nothing unwritten and waits. The worker may take the socket.
//! - `WORKER`: the worker is inside one non-blocking write.
//!
//! The worker writes a frame directly only when it moves the state `FREE → WORKER`, and then
//! finds the connection's ring and hand-off queue empty and no close asked for. After its one
//! write it stores `FREE` again. A frame written in part (its rest) or not at all (the socket
//! would block) goes to the hand-off queue, which was empty, so it is the next thing the
//! transport writes, and the transport is woken as for any queued frame.
//!
//! For a channel publish or a broadcast, the worker first only notes the connections it may
//! write to this way, sends the command's reply, then writes (`Shard::write_deferred`): a
//! publisher's receipt never waits for thousands of socket writes, and its `connections`
//! count holds (each noted connection gets the frame, written or queued). A transport that
//! claims the socket in between gets the frame in its queue when the worker comes to it
//! (nothing else is pushed to that queue meanwhile); so a `pong` the client asked for after
//! such a receipt may precede that one event. A per-user publish writes at once, before its
//! receipt.
//!
//! The transport [claims](crate::Connection::claim_socket) the socket (`FREE → TRANSPORT`,
//! spinning while the worker is inside its write, which is one system call) **before** it
//! drains, and drains at once; it [releases](crate::Connection::release_socket) it only once
//! everything it drained or made is written. So:
//!
//! - **Order is kept.** The worker writes a frame only when every frame queued before it was
//!   drained (the queue is empty) and written (the transport released the socket after
//!   writing what it drained). The rest of a frame cut short is at the front of the queue and
//!   the transport drains right after claiming, before it adds anything of its own: no frame
//!   is ever interleaved into another.
//! - **Welcome first.** The state starts at `TRANSPORT`; the transport releases only after
//!   writing the welcome. A replay still queued then stays ahead of new frames, since the
//!   worker writes directly only to an empty queue.
//! - **Close last.** A transport that writes a close frame never releases again, and the
//!   worker never writes to a connection it asked to close.
//! - **Nothing written twice.** A frame is either written by the worker (whole, or its first
//!   part with the rest queued) or queued; never both.
//! - **The slow-consumer policy is unchanged**: a socket without room means the frame is
//!   queued, and from then on the ring and the hand-off queue apply exactly as before.
//!
//! Checked by `engine/tests/direct_writes.rs` (random partial writes, would-block and
//! claims on two threads: the bytes on the "wire" are every frame once, in order) and, with
//! real sockets, by `tests/tests/direct_writes.rs`.
//!
//! # What it costs
//!
//! The worker now pays the write system call itself (on loopback about 7 µs, most of it the
//! receiver's TCP input). A broadcast to N idle connections keeps a shard busy for N writes,
//! and a command queued behind it (a per-user publish) waits that long; before, the shard
//! queued N frames in N × ~50 ns and the transports' I/O threads did the writes. Where the
//! cores are shared anyway (every run on this machine) the writes cost the same core time
//! either way, and the wake-ups, polls and drains saved are what the measurements in
//! `docs/benchmarks.md` show. `direct_writes = false` in the server restores the old split.
//!
//! # Alternatives weighed
//!
//! - **io_uring** (tokio-uring, monoio, glommio): batching the sends of one broadcast into one
//!   submission would save the per-write syscall entry, but the write's cost on loopback is
//!   the receiver's TCP input, which io_uring does not remove; it would also mean a second
//!   runtime for the transport and a kernel feature this VM's users may not have. Not taken.
//! - **Both cores writing halves of one broadcast**: the shards already split every broadcast
//!   (each writes its own connections), so with one shard per core both cores write.
//! - **Coalescing queued frames into one write**: kept — a connection whose socket was full
//!   has its frames queued, and its transport writes all it drained with one `writev`.
//!
//! # Keeping the engine a library
//!
//! `Connection::drain_into` stays the embedding API: a transport that never attaches a sink
//! (SSE, AG-UI, an embedder's own) never releases the socket, and the worker never writes.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

/// A socket the shard's worker may write to, given by the transport with
/// [`Connection::attach_sink`](crate::Connection::attach_sink). See the [module docs](self).
pub trait SocketSink: Send + Sync + 'static {
    /// One non-blocking write of `frame` (a whole WebSocket frame): the bytes written (maybe
    /// fewer than `frame.len()`), or `WouldBlock` when the socket has no room. Must never
    /// block.
    fn try_write(&self, frame: &[u8]) -> io::Result<usize>;

    /// Called once per delivery, after the worker wrote `frames` frames whole to sockets of
    /// this delivery (this sink's among them), for a frame published at `born_us`
    /// ([`mono_us`](crate::health::mono_us)). For the transport's counters and its
    /// publish → write latency: one sample per delivery, as a transport takes one per write
    /// batch.
    fn written(&self, frames: u64, born_us: u64);
}

/// The transport owns the socket (initial state).
pub(crate) const TRANSPORT: u8 = 0;
/// Nobody is writing; the worker may take the socket.
pub(crate) const FREE: u8 = 1;
/// The worker is inside one write.
pub(crate) const WORKER: u8 = 2;

/// The worker's side: takes the socket if the transport released it.
#[inline]
pub(crate) fn worker_begin(writer: &AtomicU8) -> bool {
    // Acquire: the transport's writes of what it drained are done (its Release store).
    writer
        .compare_exchange(FREE, WORKER, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

/// The worker's side: gives the socket back.
#[inline]
pub(crate) fn worker_end(writer: &AtomicU8) {
    // Release: a frame (or its rest) pushed to the hand-off queue before is visible to the
    // transport that claims next.
    writer.store(FREE, Ordering::Release);
}

/// After a panic of the worker: a socket it held (inside a write) is given back.
pub(crate) fn worker_abandon(writer: &AtomicU8) {
    let _ = writer.compare_exchange(WORKER, FREE, Ordering::Release, Ordering::Relaxed);
}

/// The transport's side: waits out a write of the worker, then owns the socket.
pub(crate) fn transport_claim(writer: &AtomicU8) {
    let mut spins = 0u32;
    loop {
        match writer.compare_exchange_weak(FREE, TRANSPORT, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return,
            Err(TRANSPORT) => return,
            Err(_) => {
                // The worker is inside one non-blocking system call.
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// The transport's side: lets the worker write.
pub(crate) fn transport_release(writer: &AtomicU8) {
    writer.store(FREE, Ordering::Release);
}
