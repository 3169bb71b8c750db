//! The [`Broker`] trait and the types of its answers (see [`crate::broker`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::broker::seed::Seed;
use crate::conn::shared::Resume;
use crate::error::PublishError;
use crate::event::{ChannelName, Event, Target, UserId};
use crate::idempotency::KeyReused;
use crate::reply::Receipt;

/// A broker's answer (see [`crate::broker`]).
pub type BrokerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send + 'a>>;

/// Why a broker did not do what it was asked. Nothing was published, opened or watched.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// This node's engine refused it: shutting down, or a shard's queue is full.
    #[error(transparent)]
    Refused(#[from] PublishError),
    /// The idempotency key was first used with another request (the API answers 409).
    #[error("idempotency_key `{0}` reused with a different request")]
    KeyReused(Arc<str>),
    /// The broker's store is unreachable or did not answer in time (the API answers 503).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The user already has this many connections (across the cluster).
    #[error("connection limit of {0} reached across the cluster")]
    ConnectionLimit(usize),
}

impl From<crate::error::HubClosed> for BrokerError {
    fn from(e: crate::error::HubClosed) -> BrokerError {
        BrokerError::Refused(e.into())
    }
}

impl From<KeyReused> for BrokerError {
    fn from(e: KeyReused) -> BrokerError {
        BrokerError::KeyReused(e.0)
    }
}

/// A publish's answer.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// The seq (user events) and the connections the event was queued to.
    pub receipt: Receipt,
    /// The receipt of an earlier publish with the same idempotency key: nothing was
    /// published now.
    pub replayed: bool,
}

/// What a broker gives a new connection before the shard registers it.
#[derive(Debug)]
pub struct Opened {
    /// Where the connection's delivery starts (the broker may have resolved the ack cursor).
    pub resume: Resume,
    /// The replay the broker read, if it keeps the history (`None`: the shard's own).
    pub seed: Option<Seed>,
    /// Held for as long as the connection is open.
    pub lease: Lease,
}

/// Held while what a broker gave it for lives (a connection, a channel watch); dropping it
/// tells the broker (for the Redis broker: uncount the connection, unsubscribe after a
/// linger).
#[must_use = "dropping a Lease ends what it holds"]
pub struct Lease(Option<Box<dyn Send + Sync>>);

impl Lease {
    /// A lease that holds nothing (the in-process broker's).
    pub fn none() -> Lease {
        Lease(None)
    }

    /// A lease that drops `guard` when it ends.
    pub fn new(guard: impl Send + Sync + 'static) -> Lease {
        Lease(Some(Box::new(guard)))
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Lease(held)"
        } else {
            "Lease(none)"
        })
    }
}

/// What must hold cluster-wide: see [`crate::broker`].
pub trait Broker: Send + Sync + std::fmt::Debug + 'static {
    /// What implements it (`"in-process"`, `"redis"`).
    fn kind(&self) -> &'static str;

    /// Publishes `event` to `target`: next seq, history, idempotency and fan-out, as one
    /// step. A publish with a key the broker saw with the same request returns that first
    /// receipt ([`Published::replayed`]). The work is queued when this returns, in call
    /// order (a batch may await the answers after queuing them all).
    fn publish(
        &self,
        target: Target,
        event: Event,
        idempotency_key: Option<Arc<str>>,
    ) -> BrokerFuture<'_, Published>;

    /// A new connection of `user` on this node, refused past `connection_limit` connections
    /// of the user (where the broker counts them; the in-process broker does not: the
    /// server's per-node table does). `history_len` bounds the replay.
    ///
    /// `rewind_to_open_run`: the connection will start a [`Resume::FromAck`] replay at the
    /// start of the run the ack cursor is inside
    /// ([`ConnectOptions::rewind_to_open_run`](crate::ConnectOptions), the AG-UI join
    /// prelude). A broker that keeps the history elsewhere then seeds the held history up to
    /// `history_len` entries, those at or below the cursor included, and answers with
    /// `Resume::FromAck` so that the shard can rewind; otherwise it may seed only what
    /// follows the cursor.
    fn open(
        &self,
        user: &UserId,
        resume: Resume,
        history_len: usize,
        connection_limit: usize,
        rewind_to_open_run: bool,
    ) -> BrokerFuture<'_, Opened>;

    /// A connection here acknowledged `seq` (the shard's own cursor is moved by
    /// [`Connection::ack`](crate::Connection::ack); a broker that keeps the cursor elsewhere
    /// moves it there too).
    fn ack(&self, user: &UserId, seq: u64);

    /// A connection here subscribes to `channel`: this node must receive the channel's events
    /// for as long as the lease is held. Answers once that holds.
    fn watch(&self, channel: &ChannelName) -> BrokerFuture<'_, Lease>;
}
