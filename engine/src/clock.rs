//! Wall-clock time as an input (docs/cluster.md §2.4): the shard never reads the clock
//! itself, its worker hands it the time, so tests drive TTLs, deadlines and the seq clock
//! cap with a [`ManualClock`] instead of sleeping.
//!
//! A [`Clock`] answers two questions: the time, in milliseconds since the Unix epoch, and
//! "wait until it is at least this millisecond" (the seq clock cap of the shard: a user
//! given more than 1,000 events within one millisecond waits for the next, see the `shard`
//! docs). [`SystemClock`], the default of [`HubConfig::clock`](crate::HubConfig::clock),
//! reads `SystemTime` and spins at most [`SEQ_CLOCK_WAIT`]; [`ManualClock`] moves only when
//! told to, and a wait moves it to the millisecond waited for (and records the wait).
//!
//! Cost: a worker reads its clock at most once per command batch, and only for a batch
//! with a command that needs the time (connect, disconnect, a cluster-mode delivery, a
//! forced close) or housekeeping; a publish carries the time its publisher read. The
//! per-recipient path never sees a clock.
//!
//! A leaf: names no other module of the crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the engine reads wall-clock time (see the [module docs](self)).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch (or any origin a test picks), now.
    fn now_ms(&self) -> u64;

    /// Waits until [`Clock::now_ms`] is at least `ms`, for a bounded time. Returns whether it
    /// had to wait (false: the time was already there).
    fn wait_until_ms(&self, ms: u64) -> bool;
}

/// Longest [`SystemClock::wait_until_ms`] waits: past it the clock is taken to have stepped
/// back, and the caller goes on (the shard then issues the seq anyway).
pub const SEQ_CLOCK_WAIT: Duration = Duration::from_millis(2);

/// The machine's wall clock: the engine's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// Milliseconds since the Unix epoch on the machine's wall clock (0 before the epoch).
pub(crate) fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        system_now_ms()
    }

    /// Yields the thread until the time is reached or [`SEQ_CLOCK_WAIT`] passed.
    #[cold]
    fn wait_until_ms(&self, ms: u64) -> bool {
        if system_now_ms() >= ms {
            return false;
        }
        let start = Instant::now();
        while system_now_ms() < ms && start.elapsed() < SEQ_CLOCK_WAIT {
            std::thread::yield_now();
        }
        true
    }
}

/// A clock a test sets by hand: for [`HubConfig::clock`](crate::HubConfig::clock) (the
/// shards' time and the publish timestamps) and for
/// [`EnrichmentConfig::clock`](crate::EnrichmentConfig::clock) (run tracking only), so a
/// test can put an event at any time, expire a user or pass an ack deadline without
/// sleeping (and without depending on the machine's speed).
///
/// [`Clock::wait_until_ms`] does not block: it moves the time forward to the millisecond
/// waited for and records it ([`ManualClock::waits`]).
///
/// Clones share the time. Reads and writes of the time are `Relaxed`: the value is the only
/// datum passed, and a test sets it before publishing (the publish's queue hand-off orders
/// it).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<Manual>);

#[derive(Debug, Default)]
struct Manual {
    ms: AtomicU64,
    waits: Mutex<Vec<u64>>,
}

impl ManualClock {
    /// A clock at `ms` (milliseconds since the Unix epoch, or any origin a test picks).
    pub fn at(ms: u64) -> ManualClock {
        let c = ManualClock::default();
        c.set(ms);
        c
    }

    /// The time, ms.
    pub fn now_ms(&self) -> u64 {
        self.0.ms.load(Ordering::Relaxed)
    }

    /// Sets the time to `ms`.
    pub fn set(&self, ms: u64) {
        self.0.ms.store(ms, Ordering::Relaxed);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The milliseconds waited for, in order: one entry per [`Clock::wait_until_ms`] that
    /// had to move the time.
    pub fn waits(&self) -> Vec<u64> {
        self.0
            .waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        ManualClock::now_ms(self)
    }

    fn wait_until_ms(&self, ms: u64) -> bool {
        if self.0.ms.fetch_max(ms, Ordering::Relaxed) >= ms {
            return false;
        }
        self.0
            .waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ms);
        true
    }
}

/// The time of one command batch of a worker: read from the clock on first use, then the
/// same for the rest of the batch (so a batch of publishes, which carry their own time,
/// reads no clock at all).
pub(crate) struct Now<'c> {
    clock: Option<&'c dyn Clock>,
    ms: Option<u64>,
}

impl<'c> Now<'c> {
    /// The time as `clock` will tell it when first asked.
    pub(crate) fn of(clock: &'c dyn Clock) -> Now<'c> {
        Now {
            clock: Some(clock),
            ms: None,
        }
    }

    /// A fixed time (tests).
    #[cfg(test)]
    pub(crate) fn at(ms: u64) -> Now<'static> {
        Now {
            clock: None,
            ms: Some(ms),
        }
    }

    /// The batch's time, ms.
    #[inline]
    pub(crate) fn ms(&mut self) -> u64 {
        match self.ms {
            Some(ms) => ms,
            None => {
                let ms = self.clock.map_or(0, |c| c.now_ms());
                self.ms = Some(ms);
                ms
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_waits_for_the_next_millisecond_at_most_the_cap() {
        let c = SystemClock;
        let now = c.now_ms();
        assert!(!c.wait_until_ms(now), "already there: no wait");
        assert!(c.wait_until_ms(now + 2));
        // Either the clock reached the millisecond, or the bounded wait (2 ms) ran out, after
        // which the clock is past `now` too.
        assert!(c.now_ms() > now);
    }

    #[test]
    fn a_manual_wait_moves_the_time_and_is_recorded() {
        let c = ManualClock::at(1_000);
        assert!(!c.wait_until_ms(999));
        assert!(!c.wait_until_ms(1_000));
        assert!(c.wait_until_ms(1_001));
        assert_eq!(c.now_ms(), 1_001);
        c.advance(5);
        assert_eq!(Clock::now_ms(&c), 1_006);
        assert_eq!(c.waits(), vec![1_001]);
        let mut now = Now::of(&c);
        assert_eq!(now.ms(), 1_006);
        c.advance(1);
        assert_eq!(now.ms(), 1_006, "read once per batch");
    }
}
