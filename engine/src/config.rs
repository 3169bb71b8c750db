//! Configuration of a [`Hub`](crate::Hub). Every field states its default.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::escalation::Escalation;
use crate::event::PriorityTable;
use crate::health::HealthConfig;

/// How a hub is sized and which limits it enforces.
///
/// `#[non_exhaustive]`: start from [`HubConfig::default()`] and set fields.
#[derive(Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// Number of shards, one worker thread each. Default: the number of cores.
    pub shards: usize,
    /// Frames a connection may hold in its priority ring before the overflow policy applies
    /// (see [`crate::ring`]). Default: 256.
    pub ring_capacity: usize,
    /// Frames handed to the transport at once (the lock-free hand-off queue per connection);
    /// a connection holds at most `ring_capacity + write_batch` frames. Default: 32.
    pub write_batch: usize,
    /// Events kept per user for offline delivery and resume. Default: 1,000.
    pub history_len: usize,
    /// Age after which a history event is no longer kept. Default: 10 minutes.
    pub history_max_age: Duration,
    /// How long a user with no connection keeps state (seq, ack cursor, history) after its last
    /// connection closed or its last event arrived. Default: 5 minutes.
    pub user_ttl: Duration,
    /// Keep an idle user's state past `user_ttl` while its history still holds events (they
    /// then age out with `history_max_age`). Default: false.
    pub retain_history: bool,
    /// How long a critical user event may stay unacknowledged before it is escalated.
    /// Default: 30 seconds.
    pub ack_deadline: Duration,
    /// Priority per event type. Default: DESIGN.md's table.
    pub priorities: PriorityTable,
    /// How often each worker runs housekeeping (deadlines, eviction). Default: 50 ms.
    pub tick: Duration,
    /// Called (on a dedicated thread, never on the hot path) for each escalated event.
    /// Default: none (escalations are still counted).
    pub escalation: Option<Arc<dyn Escalation>>,
    /// Escalations waiting for the hook; beyond it they are counted as dropped. Default: 4,096.
    pub escalation_queue: usize,
    /// The health monitor, canary and worker recovery (see [`crate::health`]). Default: the
    /// monitor off, recovery on (5 restarts).
    pub health: HealthConfig,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ring_capacity: 256,
            write_batch: 32,
            history_len: 1_000,
            history_max_age: Duration::from_secs(600),
            user_ttl: Duration::from_secs(300),
            retain_history: false,
            ack_deadline: Duration::from_secs(30),
            priorities: PriorityTable::default(),
            tick: Duration::from_millis(50),
            escalation: None,
            escalation_queue: 4_096,
            health: HealthConfig::default(),
        }
    }
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("shards", &self.shards)
            .field("ring_capacity", &self.ring_capacity)
            .field("write_batch", &self.write_batch)
            .field("history_len", &self.history_len)
            .field("history_max_age", &self.history_max_age)
            .field("user_ttl", &self.user_ttl)
            .field("retain_history", &self.retain_history)
            .field("ack_deadline", &self.ack_deadline)
            .field("tick", &self.tick)
            .field("escalation", &self.escalation.is_some())
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}
