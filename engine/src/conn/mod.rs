//! The transport's side of a connection: a handle whose queued frames are drained in batches.
//!
//! # Hand-off
//!
//! The shard worker owns each connection's [`PriorityRing`](crate::ring::PriorityRing); the
//! transport (a socket writer task) never touches it. Between them sits a small lock-free
//! bounded single-producer single-consumer queue ([`crate::handoff`], `write_batch` slots)
//! plus an `AtomicWaker`, all in one cache line besides the slots:
//!
//! 1. The worker pushes a frame straight into the hand-off queue while its ring is empty and
//!    the queue has room, and wakes the transport. This is the fast path of every healthy
//!    connection: no ring, no allocation.
//! 2. Otherwise the frame goes into the ring (where the overflow policy applies) and the
//!    worker sets `backlogged`.
//! 3. The transport [`drain`](Connection::drain_into)s the queue for one vectored write; when
//!    it finds `backlogged` set it clears it and asks the worker for a refill, which moves
//!    ring frames into the queue (and sets `backlogged` again if some remain).
//!
//! A transport that gives the engine its socket ([`Connection::attach_sink`]) lets the worker
//! skip all three when the connection is idle: the worker writes the frame itself (see
//! [`crate::sink`] for who may write when, and why order holds).
//!
//! Frames in the hand-off queue are committed: they are no longer coalesced or dropped. So a
//! connection holds at most `ring_capacity + write_batch` frames.
//!
//! # Close
//!
//! The engine closes a connection by storing a close code (1013 for a slow consumer that
//! could not take a critical event, 1001 when the hub shuts down) and waking the transport,
//! which should write what it has drained, send a close frame with that code, and drop the
//! handle. Dropping the handle unregisters the connection.

pub(crate) mod handle;
pub(crate) mod shared;

pub use handle::{Connecting, Connection, Readiness};
pub use shared::{ConnId, ConnectOptions, Resume, Welcome, close_code};
