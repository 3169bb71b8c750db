//! Health as a state machine, probed end to end, with bounded recovery.
//!
//! # Components
//!
//! Every component is `healthy`, `degraded` or `failed`; the node takes the worst state of
//! its components:
//!
//! - `shard-N` — one per worker. A watchdog (the monitor thread) reads the time of the
//!   worker's last loop iteration: a loop lag over [`HealthConfig::stall_degraded`] is
//!   degraded, over [`HealthConfig::stall_failed`] failed. A worker that panicked is degraded
//!   while it waits to be restarted, and failed once its restarts are exhausted.
//! - `publish` — failed when a shard is down (publishes to its users fail), degraded when
//!   the command queues hold more than [`HealthConfig::queue_depth_max`] commands.
//! - `delivery` — degraded when the canary (below) is not delivered, when forced closes run
//!   faster than [`HealthConfig::forced_close_rate`] per second, or when more than
//!   [`HealthConfig::unacked_critical_max`] critical events wait for an ack.
//! - `broker` (`kind: in-process`) — the path from a publish to each shard's command queue,
//!   which the embedded mode's in-process broker is. Degraded when publishes wait on a shard
//!   that does not take them (commands queued while its loop lag is over
//!   [`HealthConfig::stall_degraded`], or while its worker waits to be restarted); failed when
//!   publishes to a shard fail (its worker is down). A cluster broker will report its own link
//!   here, with its own `kind`.
//!
//! # The canary
//!
//! A process that is alive is not a pipeline that delivers. Each interval the monitor
//! publishes a tiny event to an internal user homed on each shard and checks that the event
//! reached that user's internal connection: it travels the real publish → shard → connection
//! hand-off path. A shard that silently stops delivering turns `delivery` degraded within two
//! intervals even though every thread is alive. Internal users have ids no token can carry
//! (they begin with a control character), are never sent broadcasts, and are left out of the
//! `connections` and `users` gauges and of the published and delivered counters.
//!
//! # Recovery
//!
//! A worker that panics is restarted on its own thread after an exponential backoff
//! ([`HealthConfig::restart_backoff`], doubling, at most 10 s). Its connections are closed
//! with 1011 so clients reconnect and resume from the history, which survives the restart;
//! commands sent meanwhile wait in the queue and are served after the restart. After
//! [`HealthConfig::max_restarts`] restarts with no [`HealthConfig::stable_after`] period of
//! calm in between, the worker gives up: the shard is failed, so the node is failed and
//! refuses new work instead of hanging. A restart that holds returns the shard to healthy.
//!
//! Transitions are logged (`tracing`, target `agentcast::health`) and counted.

use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_utils::sync::{Parker, Unparker};

use crate::conn::{ConnectOptions, Connection};
use crate::event::{Data, Event, EventKind, Target, UserId};

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

/// The monitor thread's handle, held by the hub.
pub(crate) struct Monitor {
    unparker: Unparker,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    /// Starts the monitor. It holds only a weak reference to the hub, so dropping every
    /// [`Hub`](crate::Hub) still shuts the engine down.
    pub(crate) fn start(hub: Weak<crate::hub::HubInner>, interval: Duration) -> Option<Monitor> {
        let parker = Parker::new();
        let unparker = parker.unparker().clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = std::sync::Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("agentcast-health".into())
            .spawn(move || {
                let mut state = MonitorState::default();
                loop {
                    // Acquire pairs with the Release store in `stop`.
                    if stop2.load(Ordering::Acquire) {
                        break;
                    }
                    let Some(inner) = hub.upgrade() else { break };
                    let hub = crate::Hub::from_inner(inner);
                    state.check(&hub, hub.config().health.canary);
                    drop(hub);
                    parker.park_timeout(interval);
                }
                // The canary connections unregister here (their workers may be gone).
                drop(state);
            })
            .ok()?;
        Some(Monitor {
            unparker,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.unparker.unpark();
        if let Some(t) = self.thread.take() {
            // The monitor itself may drop the last `Hub` (it upgrades its weak reference for
            // each check): it must not wait for itself.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// One shard's canary.
#[derive(Default)]
struct Canary {
    user: Option<UserId>,
    conn: Option<Connection>,
    /// Nonce of the canary in flight and when it was sent (mono ms).
    outstanding: Option<(u64, u64)>,
    /// Since when (mono ms) the in-flight canary is late, if it is.
    late_since: Option<u64>,
    /// A registration in progress (polled, never waited on: a stalled worker must not stall
    /// the monitor).
    pending: Option<crate::hub::Connecting>,
    frames: Vec<Bytes>,
    sent_count: u64,
    received_count: u64,
}

#[derive(Default)]
struct MonitorState {
    canaries: Vec<Canary>,
    nonce: u64,
    /// Per component: (state, since_ms, transitions).
    previous: Vec<(String, HealthState, u64, u64)>,
    transitions: u64,
    last_forced: Option<(u64, u64)>,
    canary_sent: u64,
}

const CANARY_KIND: &str = "agentcast_canary";

impl MonitorState {
    fn check(&mut self, hub: &crate::Hub, canary: bool) {
        let cfg = &hub.config().health;
        let now = mono_ms();
        let shards = hub.worker_health();
        let mut components: Vec<(String, HealthState, String, u64)> = Vec::new();

        if self.canaries.len() != shards.len() {
            self.canaries = (0..shards.len()).map(|_| Canary::default()).collect();
        }

        // Shards: phase and loop lag.
        let mut down = Vec::new();
        // Per shard: (phase, loop lag ms) for the broker below.
        let mut seen = Vec::with_capacity(shards.len());
        for (i, w) in shards.iter().enumerate() {
            let restarts = w.restarts.load(Ordering::Relaxed);
            let (state, reason) = match w.phase.load(Ordering::Relaxed) {
                PHASE_FAILED => {
                    down.push(i);
                    (
                        HealthState::Failed,
                        format!(
                            "worker panicked and {restarts} restarts were exhausted: {}",
                            w.panic_message()
                        ),
                    )
                }
                PHASE_STOPPED => {
                    down.push(i);
                    (HealthState::Failed, "worker stopped".to_owned())
                }
                PHASE_RESTARTING => (
                    HealthState::Degraded,
                    format!(
                        "worker panicked ({}); restart {} pending",
                        w.panic_message(),
                        restarts + 1
                    ),
                ),
                _ => {
                    let lag = now.saturating_sub(w.beat_ms.load(Ordering::Relaxed));
                    seen.push((PHASE_RUNNING, lag));
                    if lag > cfg.stall_failed.as_millis() as u64 {
                        down.push(i);
                        (
                            HealthState::Failed,
                            format!("worker stalled: loop lag {lag} ms"),
                        )
                    } else if lag > cfg.stall_degraded.as_millis() as u64 {
                        (
                            HealthState::Degraded,
                            format!("worker slow: loop lag {lag} ms"),
                        )
                    } else {
                        (HealthState::Healthy, format!("loop lag {lag} ms"))
                    }
                }
            };
            if seen.len() == i {
                seen.push((w.phase.load(Ordering::Relaxed), 0));
            }
            components.push((format!("shard-{i}"), state, reason, restarts));
        }

        // Publish path.
        let depth = hub.command_queue_depth();
        let publish = if !down.is_empty() {
            (
                HealthState::Failed,
                format!("shard {down:?} down: publishes to its users fail"),
            )
        } else if depth > cfg.queue_depth_max {
            (
                HealthState::Degraded,
                format!("{depth} commands waiting in the shard queues"),
            )
        } else {
            (HealthState::Healthy, format!("{depth} commands queued"))
        };
        components.push(("publish".into(), publish.0, publish.1, 0));

        // Delivery: canary, forced-close rate, unacked critical.
        let mut problems = Vec::new();
        if canary {
            let late_ms = cfg.interval.unwrap_or(Duration::from_secs(1)).as_millis() as u64;
            for (i, c) in self.canaries.iter_mut().enumerate() {
                let running = shards[i].phase.load(Ordering::Relaxed) == PHASE_RUNNING;
                if let Some(late) = c.probe(hub, i, now, late_ms, running, &mut self.nonce) {
                    problems.push(format!("canary not delivered on shard {i} for {late} ms"));
                }
            }
            self.canary_sent = self.canaries.iter().map(|c| c.sent()).sum::<u64>();
        }
        let stats = hub.stats();
        let forced = stats.total.forced_closes;
        if let Some((t0, f0)) = self.last_forced {
            let dt = now.saturating_sub(t0).max(1) as f64 / 1000.0;
            let rate = forced.saturating_sub(f0) as f64 / dt;
            if rate > cfg.forced_close_rate {
                problems.push(format!("{rate:.0} forced closes/s"));
            }
        }
        self.last_forced = Some((now, forced));
        if stats.total.unacked_critical > cfg.unacked_critical_max {
            problems.push(format!(
                "{} critical events unacknowledged",
                stats.total.unacked_critical
            ));
        }
        let delivery = if problems.is_empty() {
            (HealthState::Healthy, "delivering".to_owned())
        } else {
            (HealthState::Degraded, problems.join("; "))
        };
        components.push(("delivery".into(), delivery.0, delivery.1, 0));
        let (state, reason) = match &hub.config().broker_health {
            // Cluster mode: the broker reports its own link (see `crate::broker`).
            Some(b) => b.check(),
            None => broker_state(&seen, &hub.command_queue_depths(), cfg),
        };
        components.push(("broker".into(), state, reason, 0));

        self.publish(hub, components);
    }

    fn publish(&mut self, hub: &crate::Hub, components: Vec<(String, HealthState, String, u64)>) {
        let wall = crate::frame::now_ms();
        let mut out = Vec::with_capacity(components.len());
        for (name, state, reason, attempts) in components {
            let prev = self.previous.iter_mut().find(|p| p.0 == name);
            let (since, transitions) = match prev {
                Some(p) => {
                    if p.1 != state {
                        log_transition(&name, p.1, state, &reason);
                        p.1 = state;
                        p.2 = wall;
                        p.3 += 1;
                        self.transitions += 1;
                    }
                    (p.2, p.3)
                }
                None => {
                    if state != HealthState::Healthy {
                        log_transition(&name, HealthState::Healthy, state, &reason);
                        self.transitions += 1;
                    }
                    let t = u64::from(state != HealthState::Healthy);
                    self.previous.push((name.clone(), state, wall, t));
                    (wall, t)
                }
            };
            out.push(ComponentHealth {
                kind: (name == "broker").then(|| {
                    hub.config()
                        .broker_health
                        .as_ref()
                        .map_or(BROKER_KIND, |b| b.kind())
                }),
                name,
                state,
                reason,
                since_ms: since,
                recovery_attempts: attempts,
                transitions,
            });
        }
        let status = out
            .iter()
            .map(|c| c.state)
            .max()
            .unwrap_or(HealthState::Healthy);
        let report = HealthReport {
            status,
            components: out,
            transitions: self.transitions,
            checked_ms: wall,
            canary_sent: self.canary_sent,
            canary_received: self.canaries.iter().map(|c| c.received()).sum::<u64>(),
        };
        hub.health_shared()
            .status
            .store(status as u8, Ordering::Relaxed);
        *hub.health_shared()
            .report
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = report;
    }
}

/// The `kind` of the `broker` component in the embedded mode.
const BROKER_KIND: &str = "in-process";

/// The in-process broker's state: whether publishes reach every shard's worker. `shards` is
/// (phase, loop lag ms) per shard, `depths` the commands waiting per shard.
fn broker_state(
    shards: &[(u8, u64)],
    depths: &[usize],
    cfg: &HealthConfig,
) -> (HealthState, String) {
    let stalled_ms = cfg.stall_degraded.as_millis() as u64;
    let mut worst = (HealthState::Healthy, String::new());
    for (i, &(phase, lag)) in shards.iter().enumerate() {
        let waiting = depths.get(i).copied().unwrap_or(0);
        let (state, reason) = match phase {
            PHASE_FAILED | PHASE_STOPPED => (
                HealthState::Failed,
                format!("publishes to shard {i} fail: its worker is down"),
            ),
            PHASE_RESTARTING if waiting > 0 => (
                HealthState::Degraded,
                format!("{waiting} publishes to shard {i} held until its worker restarts"),
            ),
            PHASE_RUNNING if waiting > 0 && lag > stalled_ms => (
                HealthState::Degraded,
                format!(
                    "publishes to shard {i} stalled: {waiting} commands waiting, worker loop lag {lag} ms"
                ),
            ),
            _ => continue,
        };
        if state > worst.0 {
            worst = (state, reason);
        }
    }
    if worst.0 == HealthState::Healthy {
        let queued: usize = depths.iter().sum();
        worst.1 = format!("in-process: publishes reach every shard ({queued} commands queued)");
    }
    worst
}

fn log_transition(name: &str, from: HealthState, to: HealthState, reason: &str) {
    match to {
        HealthState::Failed => tracing::error!(
            target: "agentcast::health",
            component = name, from = from.as_str(), to = to.as_str(), reason,
            "component failed"
        ),
        HealthState::Degraded => tracing::warn!(
            target: "agentcast::health",
            component = name, from = from.as_str(), to = to.as_str(), reason,
            "component degraded"
        ),
        HealthState::Healthy => tracing::info!(
            target: "agentcast::health",
            component = name, from = from.as_str(), to = to.as_str(), reason,
            "component recovered"
        ),
    }
}

impl Canary {
    fn sent(&self) -> u64 {
        self.sent_count
    }

    fn received(&self) -> u64 {
        self.received_count
    }

    /// One probe: checks the canary in flight, sends the next. Returns how late the canary
    /// in flight is when it is later than `late_ms`.
    fn probe(
        &mut self,
        hub: &crate::Hub,
        shard: usize,
        now: u64,
        late_ms: u64,
        running: bool,
        nonce: &mut u64,
    ) -> Option<u64> {
        if !running {
            // The worker restarts or is down: its shard component says so; the connection
            // was closed with 1011 and is registered again once the worker runs.
            self.conn = None;
            self.pending = None;
            self.outstanding = None;
            self.late_since = None;
            return None;
        }
        let user = self
            .user
            .get_or_insert_with(|| hub.internal_user_on(shard))
            .clone();
        if self.conn.as_ref().is_some_and(|c| c.close_code().is_some()) {
            self.conn = None;
            self.outstanding = None;
        }
        if self.conn.is_none() {
            let pending = self.pending.get_or_insert_with(|| {
                let opts = ConnectOptions {
                    history_len: Some(4),
                    internal: true,
                    ..ConnectOptions::default()
                };
                hub.connect(user.clone(), opts)
            });
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match std::pin::Pin::new(pending).poll(&mut cx) {
                std::task::Poll::Ready(Ok(c)) => {
                    self.conn = Some(c);
                    self.pending = None;
                }
                std::task::Poll::Ready(Err(_)) => {
                    self.pending = None;
                    return None;
                }
                std::task::Poll::Pending => return None,
            }
        }
        if let Some(conn) = &mut self.conn {
            self.frames.clear();
            conn.drain_into(&mut self.frames, 1024);
            if let Some((n, _)) = self.outstanding {
                let needle = format!("\"n\":{n}}}");
                if self
                    .frames
                    .iter()
                    .any(|f| contains(crate::frame::payload_of(f), needle.as_bytes()))
                {
                    self.outstanding = None;
                    self.late_since = None;
                    self.received_count += 1;
                }
            }
            if let Some(max) = self.frames.iter().filter_map(seq_of).max() {
                conn.ack(max);
            }
        }
        let late = match self.outstanding {
            Some((_, sent)) if now.saturating_sub(sent) >= late_ms => {
                let since = *self.late_since.get_or_insert(sent);
                Some(now.saturating_sub(since))
            }
            _ => None,
        };
        // A late canary may never come (a drop): send a fresh one each interval meanwhile; the
        // first that arrives ends the lateness.
        if self.outstanding.is_none() || late.is_some() {
            *nonce += 1;
            let event = Event {
                kind: EventKind::Custom(std::sync::Arc::from(CANARY_KIND)),
                run_id: None,
                data: Data::from_validated(Bytes::from(format!("{{\"n\":{}}}", *nonce))),
                priority: None,
            };
            if hub.send(Target::User(user), event).is_ok() {
                self.outstanding = Some((*nonce, now));
                self.sent_count += 1;
            }
        }
        late
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The `seq` of a user event frame (internal frames are small; a linear scan is fine).
fn seq_of(frame: &Bytes) -> Option<u64> {
    let p = crate::frame::payload_of(frame);
    let key = b"\"seq\":";
    let at = p.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = p[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&p[at..at + digits]).ok()?.parse().ok()
}

/// A report computed on demand, without canary, when no monitor runs.
pub(crate) fn check_once(hub: &crate::Hub) {
    MonitorState::default().check(hub, false);
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
