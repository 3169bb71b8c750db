//! What must hold cluster-wide, and the seam behind which it lives: the [`Broker`] trait.
//!
//! A broker takes a node's publishes (seq, history, idempotency, fan-out), opens its
//! connections (what to replay, whether the user may connect), takes their acks and keeps
//! the node subscribed to the channels its connections watch. Two implementations:
//!
//! - [`InProcessBroker`] (the embedded default): the shards are their own broker (the *owner
//!   mode*: each assigns seqs, keeps the history and the ack cursor of its users), plus an
//!   [`IdempotencyCache`](crate::idempotency::IdempotencyCache) per process. A publish is
//!   exactly a [`Hub::publish`]: no new branch, no new allocation on the embedded path but
//!   the boxed answer.
//! - the server's Redis broker (`server/src/cluster/`), where those live in Redis. The engine
//!   then
//!   - takes events that were already sequenced elsewhere ([`Hub::deliver`]): the home shard
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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::conn::Resume;
use crate::error::PublishError;
use crate::event::{ChannelName, Event, Target, UserId};
use crate::health::HealthState;
use crate::history::HistoryEntry;
use crate::hub::{Hub, Receipt};
use crate::idempotency::{IdempotencyCache, KeyReused};

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

/// A broker's answer (see the [module docs](self)).
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

/// What must hold cluster-wide: see the [module docs](self).
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
    fn open(
        &self,
        user: &UserId,
        resume: Resume,
        history_len: usize,
        connection_limit: usize,
    ) -> BrokerFuture<'_, Opened>;

    /// A connection here acknowledged `seq` (the shard's own cursor is moved by
    /// [`Connection::ack`](crate::Connection::ack); a broker that keeps the cursor elsewhere
    /// moves it there too).
    fn ack(&self, user: &UserId, seq: u64);

    /// A connection here subscribes to `channel`: this node must receive the channel's events
    /// for as long as the lease is held. Answers once that holds.
    fn watch(&self, channel: &ChannelName) -> BrokerFuture<'_, Lease>;
}

/// The embedded broker: the hub's shards in owner mode and a per-process idempotency window.
/// See the [module docs](self).
#[derive(Debug)]
pub struct InProcessBroker {
    hub: Hub,
    idempotency: IdempotencyCache,
}

impl InProcessBroker {
    /// A broker over `hub`'s shards, remembering idempotency keys as `idempotency` does.
    pub fn new(hub: Hub, idempotency: IdempotencyCache) -> InProcessBroker {
        InProcessBroker { hub, idempotency }
    }
}

impl Broker for InProcessBroker {
    fn kind(&self) -> &'static str {
        "in-process"
    }

    fn publish(
        &self,
        target: Target,
        event: Event,
        idempotency_key: Option<Arc<str>>,
    ) -> BrokerFuture<'_, Published> {
        let Some(key) = idempotency_key else {
            // Queued now, so a batch's publishes reach the shards before any is awaited.
            let reply = self.hub.publish(target, event);
            return Box::pin(async move {
                Ok(Published {
                    receipt: reply?.await?,
                    replayed: false,
                })
            });
        };
        Box::pin(async move {
            let fingerprint = self.idempotency.fingerprint(&target, &event);
            let slot = self.idempotency.slot(&key, fingerprint)?;
            let mut first = false;
            let receipt = *slot
                .get_or_try_init(|| {
                    first = true;
                    async { Ok::<_, BrokerError>(self.hub.publish(target, event)?.await?) }
                })
                .await?;
            Ok(Published {
                receipt,
                replayed: !first,
            })
        })
    }

    fn open(
        &self,
        _user: &UserId,
        resume: Resume,
        _history_len: usize,
        _connection_limit: usize,
    ) -> BrokerFuture<'_, Opened> {
        Box::pin(std::future::ready(Ok(Opened {
            resume,
            seed: None,
            lease: Lease::none(),
        })))
    }

    fn ack(&self, _user: &UserId, _seq: u64) {
        // The home shard's cursor is the only one.
    }

    fn watch(&self, _channel: &ChannelName) -> BrokerFuture<'_, Lease> {
        Box::pin(std::future::ready(Ok(Lease::none())))
    }
}
