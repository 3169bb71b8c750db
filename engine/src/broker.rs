//! What must hold cluster-wide, seen from the engine.
//!
//! Embedded, the shard is its own broker: it assigns seqs, keeps the history and the ack
//! cursor (the *owner mode*; nothing here is used). In cluster mode (see `docs/cluster.md`)
//! those live in Redis, behind the server's `cluster` module, and the engine only
//!
//! - takes events that were already sequenced elsewhere ([`Hub::deliver`](crate::Hub::deliver)):
//!   the home shard stores each in its per-user history *cache*, drops a seq it has already
//!   seen, and turns a hole in the seqs into a `gap` frame;
//! - seeds a connection's replay from what the broker read ([`Seed`], given in
//!   [`ConnectOptions::seed`](crate::ConnectOptions)): the shard merges it with the events it
//!   cached since the broker's subscription began, so an event published between the read and
//!   the registration is neither missed nor doubled;
//! - asks the broker for its health ([`BrokerHealth`]): the `broker` component of `/readyz`.
//!
//! The broker's own code (Redis I/O, reconnects) stays outside the engine, as the escalation
//! hook does (`crate::escalation`).

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
