//! The monitor thread: each interval it reads the workers' state, probes each shard with its
//! canary and publishes the [`HealthReport`]. It drives the hub only through [`Probe`], so
//! this module does not name the hub.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_utils::sync::{Parker, Unparker};

use crate::frame::now_ms;
use crate::health::canary::Canary;
use crate::health::probe::Probe;
use crate::health::state::{
    ComponentHealth, HealthConfig, HealthReport, HealthState, PHASE_FAILED, PHASE_RESTARTING,
    PHASE_RUNNING, PHASE_STOPPED, mono_ms,
};

/// The monitor thread's handle, held by the hub.
pub(crate) struct Monitor {
    unparker: Unparker,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    /// Starts the monitor. It holds only `upgrade`, which the hub gives as an upgrade of a
    /// weak reference to itself, so dropping every [`Hub`](crate::Hub) still shuts the engine
    /// down.
    pub(crate) fn start<P: Probe>(
        upgrade: impl Fn() -> Option<P> + Send + 'static,
        interval: Duration,
    ) -> Option<Monitor> {
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
                    let Some(hub) = upgrade() else { break };
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

impl MonitorState {
    fn check(&mut self, hub: &dyn Probe, canary: bool) {
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

    fn publish(&mut self, hub: &dyn Probe, components: Vec<(String, HealthState, String, u64)>) {
        let wall = now_ms();
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

/// A report computed on demand, without canary, when no monitor runs.
pub(crate) fn check_once(hub: &dyn Probe) {
    MonitorState::default().check(hub, false);
}
