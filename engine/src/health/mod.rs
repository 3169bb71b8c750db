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

pub(crate) mod canary;
pub(crate) mod monitor;
pub(crate) mod probe;
pub(crate) mod state;

pub use state::{
    ComponentHealth, Fault, FaultRefused, HealthConfig, HealthReport, HealthState, mono_us,
};
