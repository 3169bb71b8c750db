//! What must hold cluster-wide, and the seam behind which it lives: the [`Broker`] trait.
//!
//! A broker takes a node's publishes (seq, history, idempotency, fan-out), opens its
//! connections (what to replay, whether the user may connect), takes their acks and keeps
//! the node subscribed to the channels its connections watch. Two implementations:
//!
//! - [`InProcessBroker`] (the embedded default): the shards are their own broker (the *owner
//!   mode*: each assigns seqs, keeps the history and the ack cursor of its users), plus an
//!   [`IdempotencyCache`](crate::idempotency::IdempotencyCache) per process. A publish is
//!   exactly a [`Hub::publish`](crate::Hub::publish): no new branch, no new allocation on the embedded path but
//!   the boxed answer.
//! - the server's Redis broker (`server/src/cluster/`), where those live in Redis. The engine
//!   then
//!   - takes events that were already sequenced elsewhere ([`Hub::deliver`](crate::Hub::deliver)): the home shard
//!     stores each in its per-user history *cache*, drops a seq it has already seen, and
//!     turns a hole in the seqs into a `gap` frame;
//!   - seeds a connection's replay from what the broker read ([`Seed`], given in
//!     [`ConnectOptions::seed`](crate::ConnectOptions)): the shard merges it with the events
//!     it cached since the broker's subscription began, so an event published between the
//!     read and the registration is neither missed nor doubled;
//!   - asks the broker for its health ([`BrokerHealth`]): the `broker` component of
//!     `/readyz`.
//!
//! The trait answers with boxed futures ([`BrokerFuture`]) so that the Redis broker's I/O
//! and timers stay on the server's runtime and out of the engine (STYLE 4), as the
//! escalation hook does (`crate::escalation`).
//!
//! Files: `broker/seed.rs` (what the engine takes from a broker), `broker/api.rs` (the trait
//! and its answers), `broker/in_process.rs` (the embedded broker).

pub(crate) mod api;
pub(crate) mod in_process;
pub(crate) mod seed;

pub use api::{Broker, BrokerError, BrokerFuture, Lease, Opened, Published};
pub use in_process::InProcessBroker;
pub use seed::{BrokerHealth, Seed};
