//! Shard workers: one OS thread per shard, the only code that touches its shard.
//!
//! Other threads talk to a worker through a lock-free queue of [`Command`]s (crossbeam's
//! `SegQueue`) and wake it with a `Parker`/`Unparker` pair (an atomic swap when the worker is
//! awake; a futex wake only when it sleeps). The worker pops commands until the queue is
//! empty, publishes its counters, runs housekeeping once per tick (ack deadlines, idle-user
//! eviction), and parks until the next command or tick. The shard's wall-clock time comes
//! from here ([`HubConfig::clock`](crate::HubConfig::clock)): one read per batch, on the
//! first command that needs it (and again every [`CLOCK_EVERY`] commands of a long burst),
//! and one per housekeeping. Ticks are scheduled on the monotonic clock.
//!
//! # Overload
//!
//! The queue is bounded for publishers: a publish finding `command_queue` publishes waiting is
//! refused ([`PublishError::Overloaded`], counted in `publishes_refused`) before anything is
//! queued. Commands of transports and the hub (refills, disconnects, acks, connects) are
//! never refused (a refused refill would strand a connection's frames) and not counted.
//!
//! The check is O(1) and keeps off the worker's cache lines: publishers count what they
//! queue in `publishes_in` (one `Relaxed` add on a line only publishers touch), and the
//! worker counts what it takes in a local variable and stores it to `publishes_out`, a line of
//! its own that publishers only read, every [`CLOCK_EVERY`] commands (and, for a bound below
//! [`SMALL_QUEUE`], at the end of each burst too) and before it parks. Publishes waiting = `in - out`. The
//! worker's report lags by less than [`CLOCK_EVERY`] commands, which can only make the queue
//! look fuller: a publish may be refused up to that many publishes early (under 1.6% of a
//! bound of [`SMALL_QUEUE`] or more), never admitted past the bound. Reporting at the end of
//! every burst regardless would cost each publish a cache miss: a worker that keeps up ends a
//! burst after every command or two, and each store takes the line away from the publishers
//! (measured: +10–16% per pipelined per-user publish in criterion). (Reading crossbeam's `len()` instead
//! would load the queue's head index, which the busy worker writes on every pop, on every
//! publish.) A broadcast or channel publish checks every shard first, then queues to each, so
//! concurrent broadcasts may pass the bound by one each.
//!
//! Sustained load does not starve housekeeping: every [`CLOCK_EVERY`] commands of a burst the
//! worker reads the clock, and when a tick is overdue it runs housekeeping (escalating
//! overdue critical events, evicting idle users) before it goes on with the queue.
//!
//! # Close
//!
//! A graceful shutdown has two steps. [`Command::Drain`] (from
//! [`Hub::begin_shutdown`](crate::Hub::begin_shutdown)) switches the worker to draining: from
//! then on it refuses publishes, connects and subscriptions (their replies resolve to
//! [`HubClosed`]) and keeps serving refills, disconnects and acks, so every frame already
//! queued to a connection (ring and hand-off queue) still reaches its transport; each
//! connection is asked to close with 1001 once its ring is empty, which the transport sees
//! after the last frame. A transport that disconnects while draining leaves its queued frames
//! counted in `shutdown_unwritten`.
//!
//! [`Command::Shutdown`] stops the worker: it asks every connection still registered to close
//! with 1001 (frames left in rings are counted in `shutdown_unwritten`), marks itself closed
//! and drops whatever is still queued, so a caller waiting on a [`Reply`](crate::Reply) gets
//! [`HubClosed`] instead of waiting forever. A command pushed concurrently with the close is
//! dropped by whichever of the two sides looks last (see [`WorkerShared::send`]).
//!
//! # Panics
//!
//! The loop runs under `catch_unwind`. After a panic the shard closes its connections with
//! 1011 (keeping user histories), waits an exponential backoff and serves again; commands sent
//! meanwhile wait in the queue. The policy, and what the health monitor reports meanwhile, is
//! in [`crate::health`]. The worker also stores a heartbeat (a monotonic millisecond count)
//! every loop iteration and every 64 commands, which the monitor reads as loop lag.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;
use crossbeam_utils::CachePadded;
use crossbeam_utils::sync::{Parker, Unparker};

use crate::clock::Now;
use crate::command;
use crate::conn::shared::close_code;
use crate::error::{HubClosed, PublishError};
use crate::health::state::{
    PHASE_FAILED, PHASE_RESTARTING, PHASE_RUNNING, PHASE_STOPPED, WorkerHealth, panic_text,
};
use crate::shard::Shard;
use crate::stats::ShardCounters;

/// A request to this crate's shard worker (see [`command::Command`]).
pub(crate) type Command = command::Command<Shard>;

/// `spin_loop` hints before a worker with nothing to do parks (about 2 µs on x86-64).
const IDLE_SPINS: u32 = 256;

/// Commands between two reads of the clock (heartbeat, overdue housekeeping) in a burst: one
/// `Instant::now()` (about 25 ns) per 64 commands of at least 1 µs each.
const CLOCK_EVERY: u32 = 64;

/// Bounds below this are reported at the end of every burst (see [Overload](self#overload)).
const SMALL_QUEUE: usize = 4_096;

/// What other threads hold of a worker.
pub(crate) struct WorkerShared {
    queue: SegQueue<Command>,
    unparker: Unparker,
    /// Set once by the worker when it stops. SeqCst on both sides of `send` and of the final
    /// drain: either the worker's drain sees a command, or the sender sees the flag.
    closed: AtomicBool,
    /// Publishes beyond which publishes are refused (see [Overload](self#overload)).
    capacity: usize,
    /// Whether the worker reports `publishes_out` at the end of every burst (a bound below
    /// [`SMALL_QUEUE`], where a lag of [`CLOCK_EVERY`] would matter).
    report_every_burst: bool,
    /// Publishes the worker has taken off the queue, as of its last report. Stored only by
    /// the worker (see [Overload](self#overload)); read by publishers, on its own line so a
    /// store does not take `closed` and `unparker` away from them. `Relaxed`: a count that
    /// publishes no other memory; a stale (smaller) value only makes the queue look fuller.
    publishes_out: CachePadded<AtomicU64>,
    /// Publishes queued so far. Added to by publishers (`Relaxed`: the read-modify-write is
    /// what makes the bound exact; it orders nothing else), on its own cache line so it does
    /// not invalidate the line above on every publish.
    publishes_in: CachePadded<AtomicU64>,
    pub(crate) counters: ShardCounters,
    pub(crate) health: WorkerHealth,
}

impl std::fmt::Debug for WorkerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerShared")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl WorkerShared {
    /// Queues `cmd` and wakes the worker. Lock-free.
    pub(crate) fn send(&self, cmd: Command) -> Result<(), HubClosed> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(HubClosed);
        }
        self.queue.push(cmd);
        if self.closed.load(Ordering::SeqCst) {
            // The worker may have finished its final drain before our push: drop it here.
            while self.queue.pop().is_some() {}
            return Err(HubClosed);
        }
        self.unparker.unpark();
        Ok(())
    }
}

impl WorkerShared {
    /// Commands waiting. O(1) (crossbeam reads the head and tail indices).
    pub(crate) fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Whether a publish would be refused now (see [Overload](self#overload)). O(1): two
    /// loads.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        let queued = self.publishes_in.load(Ordering::Relaxed);
        waiting(queued, self.publishes_out.load(Ordering::Relaxed)) >= self.capacity as u64
    }

    /// Counts a publish refused for a full queue and returns the error.
    #[cold]
    pub(crate) fn refuse(&self) -> PublishError {
        self.counters
            .worker
            .publishes_refused
            .fetch_add(1, Ordering::Relaxed);
        PublishError::Overloaded {
            capacity: self.capacity,
        }
    }

    /// Queues a publish unless `capacity` publishes are waiting. Lock-free: one `Relaxed`
    /// add and one load besides the push (see [Overload](self#overload)).
    #[inline]
    pub(crate) fn send_publish(&self, cmd: Command) -> Result<(), PublishError> {
        let before = self.publishes_in.fetch_add(1, Ordering::Relaxed);
        if waiting(before, self.publishes_out.load(Ordering::Relaxed)) >= self.capacity as u64 {
            self.publishes_in.fetch_sub(1, Ordering::Relaxed);
            return Err(self.refuse());
        }
        self.send(cmd).map_err(PublishError::from)
    }

    /// Queues a publish that already passed [`WorkerShared::is_full`] (one shard's part of a
    /// broadcast). Lock-free.
    #[inline]
    pub(crate) fn send_checked_publish(&self, cmd: Command) -> Result<(), HubClosed> {
        self.publishes_in.fetch_add(1, Ordering::Relaxed);
        self.send(cmd)
    }
}

/// Publishes waiting, from a publisher's count of what was queued (`queued`, its own
/// `fetch_add` result or a load) and the worker's report (`out`). `out` can exceed `queued`:
/// between a publisher's add and its load of `out`, the worker may take and report publishes
/// that other publishers queued after it. The queue is then nearly empty, so that reads as 0
/// (a wrapping subtraction would read as 2^64 and refuse the publish with a spurious 503:
/// found by `agentcast bench`, 6 in 150,000 publishes from two HTTP threads).
#[inline]
fn waiting(queued: u64, out: u64) -> u64 {
    queued.saturating_sub(out)
}

/// Starts the worker of shard `index`.
pub(crate) fn spawn(
    index: usize,
    shard: Shard,
    capacity: usize,
) -> std::io::Result<(Arc<WorkerShared>, std::thread::JoinHandle<()>)> {
    let parker = Parker::new();
    let shared = Arc::new(WorkerShared {
        queue: SegQueue::new(),
        unparker: parker.unparker().clone(),
        closed: AtomicBool::new(false),
        capacity: capacity.max(1),
        report_every_burst: capacity < SMALL_QUEUE,
        publishes_out: CachePadded::new(AtomicU64::new(0)),
        publishes_in: CachePadded::new(AtomicU64::new(0)),
        counters: ShardCounters::default(),
        health: WorkerHealth::default(),
    });
    shared.health.beat();
    let worker = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name(format!("agentcast-shard-{index}"))
        .spawn(move || run(shard, &worker, parker))?;
    Ok((shared, thread))
}

/// The worker thread: serves commands until shutdown, restarting the loop after a panic (see
/// [`crate::health`] for the policy) until the restarts are exhausted.
fn run(mut shard: Shard, shared: &Arc<WorkerShared>, parker: Parker) {
    let policy = shard.health_policy();
    let mut consecutive: u32 = 0;
    let mut last_restart: Option<Instant> = None;
    // Publishes taken off the queue: outside the loop so a panic does not lose the count.
    let mut taken: u64 = 0;
    loop {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            serve(&mut shard, shared, &parker, &mut taken)
        }));
        let payload = match outcome {
            Ok(()) => break,
            Err(payload) => payload,
        };
        let message = panic_text(&*payload);
        *shared
            .health
            .last_panic
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = message.clone();
        if last_restart.is_some_and(|t| t.elapsed() >= policy.stable_after) {
            consecutive = 0;
        }
        // Whatever the panic interrupted, the connections' state is suspect: close them with
        // 1011 so clients resume from the history, which is kept.
        let now = shard.clock().now_ms();
        shard.recover_after_panic(now);
        shard.flush_counters(&shared.counters);
        if consecutive >= policy.max_restarts {
            tracing::error!(
                target: "agentcast::health",
                restarts = consecutive,
                panic = %message,
                "shard worker panicked; restarts exhausted, the shard is down"
            );
            shared.health.set_phase(PHASE_FAILED);
            shared.closed.store(true, Ordering::SeqCst);
            while shared.queue.pop().is_some() {}
            return;
        }
        consecutive += 1;
        let delay = policy
            .restart_backoff
            .saturating_mul(1 << (consecutive - 1).min(16))
            .min(Duration::from_secs(10));
        tracing::error!(
            target: "agentcast::health",
            attempt = consecutive,
            delay_ms = delay.as_millis() as u64,
            panic = %message,
            "shard worker panicked; restarting"
        );
        shared.health.set_phase(PHASE_RESTARTING);
        std::thread::sleep(delay);
        shared.health.restarts.fetch_add(1, Ordering::Relaxed);
        last_restart = Some(Instant::now());
        shared.health.beat();
        shared.health.set_phase(PHASE_RUNNING);
    }
    shard.close_all(close_code::GOING_AWAY);
    shard.flush_counters(&shared.counters);
    shared.health.set_phase(PHASE_STOPPED);
    shared.closed.store(true, Ordering::SeqCst);
    while shared.queue.pop().is_some() {}
}

/// Whether `cmd` counts against the publish bound (see [Overload](self#overload)).
#[inline]
fn is_publish(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Publish { .. } | Command::Fanout { .. } | Command::Deliver { .. }
    )
}

/// The worker loop proper; returns on shutdown. `taken` counts the publishes popped.
fn serve(shard: &mut Shard, shared: &Arc<WorkerShared>, parker: &Parker, taken: &mut u64) {
    if shard.is_draining() {
        // Restarted after a panic during a graceful shutdown: keep draining.
        return serve_draining(shard, shared, parker, taken);
    }
    let tick = shard.tick();
    let clock = shard.clock();
    let mut next_tick = Instant::now() + tick;
    loop {
        shared.health.beat();
        let mut n: u32 = 0;
        // The batch's wall-clock time, read when a command first needs it (see `crate::clock`).
        let mut batch = Now::of(&*clock);
        while let Some(cmd) = shared.queue.pop() {
            *taken += u64::from(is_publish(&cmd));
            match cmd {
                Command::Shutdown => {
                    shard.flush_counters(&shared.counters);
                    return;
                }
                Command::Drain => {
                    shard.begin_drain();
                    shard.flush_counters(&shared.counters);
                    return serve_draining(shard, shared, parker, taken);
                }
                cmd => shard.handle(cmd, &shared.counters, &mut batch),
            }
            n = n.wrapping_add(1);
            if n % CLOCK_EVERY == 0 {
                shared.publishes_out.store(*taken, Ordering::Relaxed);
                // A long burst is not a stall: keep the watchdog informed.
                shared.health.beat();
                // Nor a reason to skip housekeeping (see Overload in the module docs).
                let now = Instant::now();
                if now >= next_tick {
                    shard.housekeeping(clock.now_ms());
                    shard.flush_counters(&shared.counters);
                    next_tick = now + tick;
                }
                // A long burst is many batches: the time moves on.
                batch = Now::of(&*clock);
            }
        }
        if shared.report_every_burst {
            shared.publishes_out.store(*taken, Ordering::Relaxed);
        }
        shard.flush_counters(&shared.counters);
        let now = Instant::now();
        if now >= next_tick {
            shard.housekeeping(clock.now_ms());
            shard.flush_counters(&shared.counters);
            next_tick = now + tick;
        }
        // Spin briefly (a few microseconds, no syscall) before parking: a publisher that
        // sends again within that window finds the worker awake (an atomic swap) instead of
        // paying a futex wake-up. No `sched_yield`: on a machine whose cores are all busy,
        // yielding in a loop takes CPU from the threads that have real work (measured: 20%
        // of the server's CPU in `sched_yield` under per-user load on 2 cores).
        for _ in 0..IDLE_SPINS {
            if !shared.queue.is_empty() {
                break;
            }
            std::hint::spin_loop();
        }
        if shared.queue.is_empty() {
            // Going to sleep: report exactly (no publisher is racing a busy worker now).
            shared.publishes_out.store(*taken, Ordering::Relaxed);
            parker.park_timeout(
                next_tick
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_micros(100)),
            );
        }
    }
}

/// The loop of a draining worker (see the [module docs](self)); returns on shutdown.
fn serve_draining(shard: &mut Shard, shared: &Arc<WorkerShared>, parker: &Parker, taken: &mut u64) {
    let tick = shard.tick();
    let clock = shard.clock();
    let mut next_tick = Instant::now() + tick;
    loop {
        shared.health.beat();
        let mut batch = Now::of(&*clock);
        while let Some(cmd) = shared.queue.pop() {
            *taken += u64::from(is_publish(&cmd));
            match cmd {
                Command::Shutdown => {
                    shard.flush_counters(&shared.counters);
                    return;
                }
                // Refused: dropping the reply resolves it to `HubClosed`, and nothing was
                // queued to any connection, so no receipt promises a frame.
                Command::Publish { .. }
                | Command::Fanout { .. }
                | Command::Deliver { .. }
                | Command::Connect { .. }
                | Command::Subscribe { .. }
                | Command::Fault(_)
                | Command::Drain => {}
                cmd => shard.handle(cmd, &shared.counters, &mut batch),
            }
        }
        shared.publishes_out.store(*taken, Ordering::Relaxed);
        shard.flush_counters(&shared.counters);
        let now = Instant::now();
        if now >= next_tick {
            shard.housekeeping(clock.now_ms());
            shard.flush_counters(&shared.counters);
            next_tick = now + tick;
        }
        if shared.queue.is_empty() {
            parker.park_timeout(
                next_tick
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_micros(100)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::waiting;

    #[test]
    fn a_report_ahead_of_the_publishers_count_is_an_empty_queue_not_a_full_one() {
        assert_eq!(waiting(10, 4), 6);
        assert_eq!(waiting(10, 10), 0);
        // The worker reported publishes queued after this publisher's add.
        assert_eq!(waiting(10, 12), 0);
    }
}
