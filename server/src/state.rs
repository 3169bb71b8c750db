//! State shared by every connection task: the hub, configuration, authenticator, counters,
//! the broker and the connection registries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentcast_engine::Hub;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::metrics::ServerMetrics;
use crate::tier::UserConnections;

/// Everything a request handler or WebSocket session needs. Shared behind an `Arc`.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) hub: Hub,
    /// Where publishes, connections, acks and channel watches go: the in-process broker
    /// (embedded) or the Redis one (cluster mode).
    pub(crate) broker: Arc<dyn agentcast_engine::Broker>,
    /// Cluster mode: the Redis link behind `broker` (`None` embedded).
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    pub(crate) cfg: Config,
    pub(crate) auth: Authenticator,
    pub(crate) metrics: Arc<ServerMetrics>,
    pub(crate) users: Arc<UserConnections>,
    pub(crate) sessions: Arc<Sessions>,
    /// Set when shutdown begins: new upgrades get 503 and `/readyz` turns 503. `Relaxed`: a
    /// flag read on its own, publishing nothing else.
    pub(crate) shutting_down: AtomicBool,
    /// Dev mode only: asks the sessions of a user to close (`POST /api/v1/dev/disconnect`).
    pub(crate) dev_kicks: Option<crate::http::dev::DevKicks>,
    // Graceful shutdown (H1).
    /// Set to `true` when the shutdown grace period is over: every session stops writing,
    /// counts the frames it still holds and ends (see `crate::ws::session`).
    pub(crate) abandon: tokio::sync::watch::Sender<bool>,
    /// Set to `true` when shutdown begins (after `shutting_down`): HTTP connections finish
    /// their request and close, publish streams stop reading lines.
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
    /// The open publish streams (`POST /api/v1/publish/stream`), which shutdown waits for.
    pub(crate) streams: crate::http::publish_stream::OpenStreams,
}

impl AppState {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// The node's WebSocket sessions: a [`Semaphore`] of `max_connections` permits, one per open
/// session (or upgrade in progress), and a wake-up when every permit is back (for graceful
/// shutdown).
#[derive(Debug)]
pub(crate) struct Sessions {
    /// One permit per session that may still open.
    permits: Arc<Semaphore>,
    max: usize,
    idle: Notify,
    metrics: Arc<ServerMetrics>,
}

/// One session's slot; dropping it returns the permit.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    /// `Some` until dropped: taken in `Drop` so the permit is back before the waiter is woken.
    permit: Option<OwnedSemaphorePermit>,
    sessions: Arc<Sessions>,
}

impl Sessions {
    /// Room for `max` sessions (at most [`Semaphore::MAX_PERMITS`]).
    pub(crate) fn new(max: usize, metrics: Arc<ServerMetrics>) -> Sessions {
        let max = max.min(Semaphore::MAX_PERMITS);
        Sessions {
            permits: Arc::new(Semaphore::new(max)),
            max,
            idle: Notify::new(),
            metrics,
        }
    }

    /// Takes a slot unless `max` are open. Never waits.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<SessionSlot> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        self.metrics.ws_open.fetch_add(1, Ordering::Relaxed);
        Some(SessionSlot {
            permit: Some(permit),
            sessions: Arc::clone(self),
        })
    }

    /// Waits until no session is open.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a slot dropped in between still wakes us.
            notified.as_mut().enable();
            if self.permits.available_permits() == self.max {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let s = &self.sessions;
        s.metrics.ws_open.fetch_sub(1, Ordering::Relaxed);
        drop(self.permit.take());
        if s.permits.available_permits() == s.max {
            s.idle.notify_waiters();
        }
    }
}
