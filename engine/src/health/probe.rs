//! What the health monitor and the canary need of the hub, as a trait the hub implements, so
//! that `health` never names the hub (`impl Probe for Hub` is in `hub.rs`).

use crate::config::HubConfig;
use crate::conn::handle::Connecting;
use crate::conn::shared::ConnectOptions;
use crate::error::PublishError;
use crate::event::{Event, Target, UserId};
use crate::health::state::{HealthShared, WorkerHealth};
use crate::stats::Stats;

/// The hub as the monitor sees it (each method is the hub's own; see `impl Probe for Hub`).
pub(crate) trait Probe {
    /// The configuration in force.
    fn config(&self) -> &HubConfig;
    /// Each worker's health, in shard order.
    fn worker_health(&self) -> Vec<&WorkerHealth>;
    /// Commands waiting in every shard's queue.
    fn command_queue_depth(&self) -> usize;
    /// Commands waiting in each shard's queue, in shard order.
    fn command_queue_depths(&self) -> Vec<usize>;
    /// Where the monitor publishes its report.
    fn health_shared(&self) -> &HealthShared;
    /// An internal user whose home is `shard` (for that shard's canary).
    fn internal_user_on(&self, shard: usize) -> UserId;
    /// A snapshot of the statistics.
    fn stats(&self) -> Stats;
    /// Registers a connection (the canary's).
    fn connect(&self, user: UserId, options: ConnectOptions) -> Connecting;
    /// Publishes without a receipt (the canary event).
    fn send(&self, target: Target, event: Event) -> Result<(), PublishError>;
}
