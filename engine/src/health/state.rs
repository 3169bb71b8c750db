//! The health value types, below everything that reports health: states, the report, the
//! configuration, injected faults, what a worker tells the monitor ([`WorkerHealth`]) and the
//! latest report ([`HealthShared`]). See the [`health`](crate::health) docs.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The state of a component or of the node. Ordered: `Healthy < Degraded < Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthState {
    /// Working as intended.
    Healthy,
    /// Working, with a problem an operator should look at.
    Degraded,
    /// Not working; the node refuses new work.
    Failed,
}

impl HealthState {
    /// `"healthy"`, `"degraded"` or `"failed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Failed => "failed",
        }
    }

    /// 0, 1 or 2 (for a gauge).
    pub fn as_number(self) -> u8 {
        self as u8
    }
}

/// One component's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentHealth {
    /// `shard-0`, …, `publish`, `delivery`, `broker`.
    pub name: String,
    /// What implements the component when there is a choice: `Some("in-process")` for the
    /// embedded broker; `None` for the others.
    pub kind: Option<&'static str>,
    /// Its state.
    pub state: HealthState,
    /// Why it is not healthy (or a short description when it is).
    pub reason: String,
    /// Milliseconds since the Unix epoch when it entered `state`.
    pub since_ms: u64,
    /// Recovery attempts made for it (shard restarts).
    pub recovery_attempts: u64,
    /// Transitions of this component since start.
    pub transitions: u64,
}

/// The node's health: the worst of its components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The node's state.
    pub status: HealthState,
    /// Every component, shards first.
    pub components: Vec<ComponentHealth>,
    /// Transitions of any component since start.
    pub transitions: u64,
    /// Milliseconds since the Unix epoch of the check this report comes from (0: none yet).
    pub checked_ms: u64,
    /// Canary events published and received since start.
    pub canary_sent: u64,
    /// See `canary_sent`.
    pub canary_received: u64,
}

impl HealthReport {
    /// The component called `name`.
    pub fn component(&self, name: &str) -> Option<&ComponentHealth> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Reasons of every failed component, joined with `"; "` (for a 503 body).
    pub fn failure_reasons(&self) -> String {
        self.components
            .iter()
            .filter(|c| c.state == HealthState::Failed)
            .map(|c| format!("{}: {}", c.name, c.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Thresholds and periods of the health monitor. Every field states its default.
///
/// `#[non_exhaustive]`: start from [`HealthConfig::default()`] and set fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HealthConfig {
    /// How often the monitor checks and sends a canary; `None` turns the monitor off (no
    /// thread, no canary; [`Hub::health`](crate::Hub::health) then reports healthy shards
    /// from their worker state only when asked). Default: `None` for a bare [`HubConfig`]
    /// (the server turns it on, at 1 s).
    ///
    /// [`HubConfig`]: crate::HubConfig
    pub interval: Option<Duration>,
    /// Send and check the canary event. Default: true.
    pub canary: bool,
    /// Loop lag beyond which a shard is degraded. Default: 1 s.
    pub stall_degraded: Duration,
    /// Loop lag beyond which a shard is failed. Default: 10 s.
    pub stall_failed: Duration,
    /// Restarts of a panicked worker before it gives up. Default: 5.
    pub max_restarts: u32,
    /// First restart delay, doubled per consecutive restart (at most 10 s). Default: 100 ms.
    pub restart_backoff: Duration,
    /// Time a restarted worker must run without a panic for its restart count to reset.
    /// Default: 30 s.
    pub stable_after: Duration,
    /// Forced closes per second (over one interval) beyond which delivery is degraded.
    /// Default: 100.
    pub forced_close_rate: f64,
    /// Unacknowledged critical events beyond which delivery is degraded. Default: 10,000.
    pub unacked_critical_max: u64,
    /// Commands waiting in the shard queues beyond which publish is degraded.
    /// Default: 100,000.
    pub queue_depth_max: usize,
    /// Accept [`Hub::inject_fault`](crate::Hub::inject_fault) (tests of this machinery).
    /// Default: false.
    pub fault_injection: bool,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            interval: None,
            canary: true,
            stall_degraded: Duration::from_secs(1),
            stall_failed: Duration::from_secs(10),
            max_restarts: 5,
            restart_backoff: Duration::from_millis(100),
            stable_after: Duration::from_secs(30),
            forced_close_rate: 100.0,
            unacked_critical_max: 10_000,
            queue_depth_max: 100_000,
            fault_injection: false,
        }
    }
}

/// A fault injected into a shard worker by [`Hub::inject_fault`](crate::Hub::inject_fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The worker panics while handling the command.
    Panic,
    /// The worker sleeps this long while handling the command (a stall).
    Stall(Duration),
    /// While true, the shard accepts user publishes (assigning no seq) and delivers nothing:
    /// a pipeline that silently stops. Only the canary notices.
    DropDeliveries(bool),
}

/// Microseconds on the process's monotonic clock (the stamp of
/// [`Connection::take_publish_stamp`](crate::Connection::take_publish_stamp)); never 0.
pub fn mono_us() -> u64 {
    epoch().elapsed().as_micros() as u64 + 1
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds on a monotonic clock shared by the process (starts near 1 so that 0 can mean
/// "never").
pub(crate) fn mono_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// What a worker tells the monitor. All `Relaxed`: independent values read for display; no
/// other memory is published through them.
#[derive(Debug, Default)]
pub(crate) struct WorkerHealth {
    /// [`mono_ms`] of the last loop iteration.
    pub(crate) beat_ms: AtomicU64,
    /// One of the `PHASE_*` values.
    pub(crate) phase: AtomicU8,
    /// Restarts after a panic since start.
    pub(crate) restarts: AtomicU64,
    /// The last panic's message (written only on a panic).
    pub(crate) last_panic: Mutex<String>,
}

pub(crate) const PHASE_RUNNING: u8 = 0;
pub(crate) const PHASE_RESTARTING: u8 = 1;
pub(crate) const PHASE_FAILED: u8 = 2;
pub(crate) const PHASE_STOPPED: u8 = 3;

impl WorkerHealth {
    pub(crate) fn beat(&self) {
        self.beat_ms.store(mono_ms(), Ordering::Relaxed);
    }

    pub(crate) fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    pub(crate) fn panic_message(&self) -> String {
        self.last_panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The message of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The latest report, shared by the monitor (writer, once per interval) and readers
/// (`/readyz`). A `Mutex` is fine here: it is on no delivery path.
#[derive(Debug)]
pub(crate) struct HealthShared {
    pub(crate) report: Mutex<HealthReport>,
    /// The report's `status` as a number, for cheap reads on every upgrade. `Relaxed`: a value
    /// read on its own.
    pub(crate) status: AtomicU8,
}

impl HealthShared {
    pub(crate) fn new() -> HealthShared {
        HealthShared {
            report: Mutex::new(HealthReport {
                status: HealthState::Healthy,
                components: Vec::new(),
                transitions: 0,
                checked_ms: 0,
                canary_sent: 0,
                canary_received: 0,
            }),
            status: AtomicU8::new(HealthState::Healthy as u8),
        }
    }

    pub(crate) fn status(&self) -> HealthState {
        match self.status.load(Ordering::Relaxed) {
            0 => HealthState::Healthy,
            1 => HealthState::Degraded,
            _ => HealthState::Failed,
        }
    }

    pub(crate) fn snapshot(&self) -> HealthReport {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Why [`Hub::inject_fault`](crate::Hub::inject_fault) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FaultRefused {
    /// [`HealthConfig::fault_injection`] is off.
    #[error("fault injection is disabled")]
    Disabled,
    /// No shard has this index.
    #[error("no such shard")]
    NoSuchShard,
    /// The hub or the shard is closed.
    #[error("the shard is closed")]
    Closed,
}
