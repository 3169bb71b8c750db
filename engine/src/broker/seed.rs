//! What a broker hands the engine: the [`Seed`] of a connection's replay, and its
//! [`BrokerHealth`] (see [`crate::broker`]).

use crate::health::state::HealthState;
use crate::history::HistoryEntry;

/// What the broker read for a new connection of one user (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct Seed {
    /// The user's latest seq, cluster-wide, when the broker read it.
    pub last_seq: u64,
    /// The user's ack cursor, cluster-wide.
    pub ack: u64,
    /// The held events after the connection's resume point, oldest first (their frames
    /// already built by this node). A first entry above `resume + 1`, or no entries while
    /// `last_seq` is above the resume point, means the rest is gone: the connection gets a
    /// `gap` first.
    pub entries: Vec<HistoryEntry>,
}

/// The health of the broker, for the `broker` component of the health report.
pub trait BrokerHealth: Send + Sync + 'static {
    /// What implements it (`"redis"`), reported as the component's `kind`.
    fn kind(&self) -> &'static str;
    /// The state now and why. Called by the health monitor once per interval; must not block.
    fn check(&self) -> (HealthState, String);
}
