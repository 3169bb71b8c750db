//! State shared by every connection task: the hub, configuration, authenticator, counters,
//! the idempotency cache and the connection registries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use agentcast_engine::Hub;
use tokio::sync::Notify;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::idempotency::IdempotencyCache;
use crate::metrics::ServerMetrics;
use crate::tier::UserConnections;

/// Everything a request handler or WebSocket session needs. Shared behind an `Arc`.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) hub: Hub,
    pub(crate) cfg: Config,
    pub(crate) auth: Authenticator,
    pub(crate) metrics: Arc<ServerMetrics>,
    pub(crate) idempotency: IdempotencyCache,
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
}

impl AppState {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// The node's WebSocket sessions: a count limited by `max_connections`, and a wake-up when it
/// returns to zero (for graceful shutdown).
#[derive(Debug)]
pub(crate) struct Sessions {
    /// Open sessions (and upgrades in progress). `AcqRel` on the counter: the final decrement
    /// must be seen by the shutdown waiter after it registered for the notification.
    open: AtomicUsize,
    max: usize,
    idle: Notify,
    metrics: Arc<ServerMetrics>,
}

/// One session's slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct SessionSlot(Arc<Sessions>);

impl Sessions {
    pub(crate) fn new(max: usize, metrics: Arc<ServerMetrics>) -> Sessions {
        Sessions {
            open: AtomicUsize::new(0),
            max,
            idle: Notify::new(),
            metrics,
        }
    }

    /// Takes a slot unless `max` are open.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<SessionSlot> {
        let mut n = self.open.load(Ordering::Acquire);
        loop {
            if n >= self.max {
                return None;
            }
            match self
                .open
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => n = actual,
            }
        }
        self.metrics
            .ws_open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(SessionSlot(Arc::clone(self)))
    }

    /// Waits until no session is open.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0
            .metrics
            .ws_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
