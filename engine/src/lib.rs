//! agentcast-engine: serialize-once fan-out of agent events to WebSocket connections.
//!
//! A published event becomes one immutable [`Frame`] (the complete WebSocket text frame);
//! every recipient gets a reference-counted clone of it. Connections live in per-core
//! [`shards`](crate::shard), each mutated only by its own worker thread, so the path from
//! publish to a connection's queue takes no lock. Each connection has a bounded
//! [priority ring](crate::ring); each user a bounded [history](crate::history) with a
//! per-user `seq`, an ack cursor and escalation of unacknowledged critical events.
//!
//! ```
//! use agentcast_engine::{Data, Hub, HubConfig, UserId};
//!
//! let hub = Hub::start(HubConfig::default()).unwrap();
//! let user = UserId::new("alice").unwrap();
//! let mut phone = hub.connect(user.clone(), Default::default()).wait().unwrap();
//! let run = hub.emitter(user, "run-1");
//! run.agent_started(Data::from_json(r#"{"goal":"summarize"}"#).unwrap()).unwrap().wait().unwrap();
//! let mut frames = Vec::new();
//! phone.drain_into(&mut frames, 32);
//! let wire = String::from_utf8_lossy(&frames[0]);
//! assert!(wire.contains(r#"{"type":"agent_started","seq":"#));
//! ```
//!
//! # Layout
//!
//! One line per file, in the order of their imports: each module names only modules above
//! it (enforced by `engine/tests/layout.rs`; the facades `conn`, `enrich` and `health` hold
//! the public docs and re-exports, the code is in their files).
//!
//! Leaves and value types:
//! - [`clock`] — wall-clock time as an input: [`Clock`], [`SystemClock`] (the default),
//!   [`ManualClock`] (tests; waits move it), and the per-batch time a worker hands its shard.
//! - [`error`] — one error enum per operation.
//! - [`json`] — sans-IO reading of untrusted JSON (depth check, simd-json validation, raw spans).
//! - [`event`] — event kinds, priorities, targets, names and the publisher's raw `data`.
//! - `prefetch` (private): the cache prefetch hint of the fan-out loop.
//! - `handoff` (private): a connection's lock-free single-producer single-consumer queue.
//! - [`sink`] — direct writes: the [`SocketSink`] a transport may give its shard, and who
//!   may write to a socket when.
//! - `slots` (private): the slab of a shard's connections.
//! - [`frame`] — encoding events once into complete WebSocket frames.
//! - [`delta`] — merging consecutive `message_delta` frames of one message (rings, history).
//! - [`ring`] — a connection's bounded priority ring and its overflow policy.
//! - [`history`] — a user's bounded history ring, resume and gaps.
//! - [`stats`] — delivery statistics.
//! - [`escalation`] — the hook for critical events not acknowledged in time.
//! - [`ag_ui`] — AG-UI events: validating them, mapping them to native events, and
//!   rebuilding an AG-UI event from any frame for `?protocol=ag-ui` connections.
//! - [`publish`] — parsing publish bodies and batches into [`PublishRequest`]s.
//! - [`ndjson`] — sans-IO splitting of an NDJSON stream into bounded lines (streaming publish).
//! - [`client_msg`] — parsing client → server messages into [`ClientMessage`]s.
//! - `health/state.rs` — health states, the report, [`HealthConfig`], [`Fault`], what a
//!   worker tells the monitor, the monotonic clocks ([`health::mono_us`]).
//! - `broker/seed.rs` — what the engine takes from a broker: the [`Seed`] of a connection's
//!   replay and the [`BrokerHealth`] of the `broker` component.
//! - `enrich/catalog.rs` — enrichment's value types: [`ToolInfo`], [`ErrorCategory`],
//!   [`Severity`], [`Urgency`].
//! - `conn/shared.rs` — what a connection's shard and transport share: [`ConnId`],
//!   [`ConnectOptions`], [`Resume`], [`Welcome`], the close codes, the hand-off line.
//! - `reply` (private; re-exported by [`hub`]): [`Reply`], [`PublishReply`], [`Receipt`].
//! - [`idempotency`] — the in-process broker's window of idempotency keys.
//! - `broker/api.rs` — the [`Broker`] trait (publish, open, ack, watch) and its answers.
//!
//! Configuration, enrichment and runs:
//! - [`config`] — [`HubConfig`] and [`EnrichmentConfig`].
//! - `enrich/rules.rs` — the compiled enrichment rules and the writing of `meta` (no run state).
//! - `runs` (private): run lifecycle tracking per (user, run) on the home shard;
//!   `runs/enricher.rs` the standalone [`Enricher`].
//! - [`enrich`] — the `meta` member added to agent events: the docs, and the public paths.
//!
//! The shard and what drives it:
//! - `command` (private): the `Command`s a worker serves.
//! - [`shard`] — one worker's connections, user and channel indexes and user state: command
//!   dispatch, publish to a user and fan-out in `shard.rs`; the user table and eviction in
//!   `shard/users.rs`; connect (replay), disconnect, subscriptions and acks in
//!   `shard/conns.rs`; the delivery fast path in `shard/deliver.rs`; deadlines, idle eviction
//!   and the shutdown steps in `shard/housekeeping.rs`; counters, their flush and table sizes
//!   in `shard/tally.rs`; cluster mode (events sequenced elsewhere, seeded replays) in
//!   `shard/sequenced.rs`.
//! - `worker` (private): the shard threads, their command queues, overload
//!   and close.
//! - `conn/handle.rs` — the transport's handle: [`Connection`] (drain frames, ack,
//!   subscribe, close) and [`Connecting`]; [`conn`] — the docs (hand-off, close).
//!
//! Health, through the hub's `Probe`:
//! - `health/probe.rs` — what the monitor needs of the hub (`Probe`, implemented in `hub.rs`).
//! - `health/canary.rs` — one shard's canary: its internal connection and events.
//! - `health/monitor.rs` — the monitor thread: components, transitions, the report.
//! - [`health`] — the docs of the state machine, the canary and recovery.
//!
//! The public face:
//! - [`hub`] — start, publish, connect, health, statistics, shutdown.
//! - [`emitter`] — typed per-run publishing for Rust backends ([`Hub::emitter`]).
//! - `broker/in_process.rs` — [`InProcessBroker`], the embedded broker (the hub's
//!   owner-mode shards and the idempotency window); [`broker`] — the docs: what must hold
//!   cluster-wide, and the two implementations (the Redis one is in the server).
//! - [`sequenced`] — [`Hub::deliver`] of events a broker sequenced, and the payload split
//!   around the seq ([`UserEventParts`]).
//!
//! # Seqs
//!
//! A user's seqs increase by one per event. When a user's state is created (first connection
//! or first event after an eviction) its seqs start after `ms since the Unix epoch × 1000`
//! (and after every seq of a state its shard evicted), and a seq issued at millisecond `t`
//! stays below `(t + 1) × 1000` (a user given more than 1,000 events within one millisecond
//! waits for the next, at most 2 ms). So a new incarnation, in this process or the next one
//! after a restart, never reuses a seq an earlier one issued, as long as the wall clock does
//! not step back. Seqs stay below 2^53 until the year 2255, so JavaScript clients read them
//! exactly.

pub mod ag_ui;
pub mod broker;
pub mod client_msg;
pub mod clock;
mod command;
pub mod config;
pub mod conn;
pub mod delta;
pub mod emitter;
pub mod enrich;
pub mod error;
pub mod escalation;
pub mod event;
pub mod frame;
mod handoff;
pub mod health;
pub mod history;
pub mod hub;
pub mod idempotency;
pub mod json;
pub mod ndjson;
mod prefetch;
pub mod publish;
mod reply;
pub mod ring;
mod runs;
pub mod sequenced;
pub mod shard;
pub mod sink;
mod slots;
pub mod stats;
mod worker;

pub use broker::{
    Broker, BrokerError, BrokerFuture, BrokerHealth, InProcessBroker, Lease, Opened, Published,
    Seed,
};
pub use client_msg::ClientMessage;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{EnrichmentConfig, HubConfig};
pub use conn::{ConnId, ConnectOptions, Connection, Readiness, Resume, Welcome};
pub use emitter::UserEmitter;
pub use enrich::{Enricher, ErrorCategory, Severity, ToolInfo, Urgency};
pub use error::{HubClosed, InvalidName, ParseError, PublishError, SubscribeError};
pub use escalation::{Escalation, UnackedCritical};
pub use event::{ChannelName, Data, Event, EventKind, Priority, PriorityTable, Target, UserId};
pub use frame::Frame;
pub use health::{ComponentHealth, Fault, FaultRefused, HealthConfig, HealthReport, HealthState};
pub use history::{Gap, HistoryEntry};
pub use hub::{Connecting, Hub, PublishReply, Receipt, Reply};
pub use publish::PublishRequest;
pub use sequenced::UserEventParts;
pub use shard::Footprint;
pub use sink::SocketSink;
pub use stats::{ShardStats, Stats};
