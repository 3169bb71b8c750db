//! Connections waiting for a request head: a bounded registry, so that connections that have
//! not finished a request (and so are not authenticated yet) cost the node little.
//!
//! # Semantics
//!
//! - A connection is *pending* from its accept until its first request head is complete, and
//!   again on a keep-alive connection between the end of one request and the next head. It is
//!   not pending while a request is being handled, while a streamed response (server-sent
//!   events) is open, or once upgraded to WebSocket (then `max_connections` applies).
//! - At most `max_pending_connections` connections are pending. When one more arrives, the
//!   one pending the **longest** is closed (no response: it has not sent a request yet) and
//!   counted in `pending_evicted`. A client that sends its head promptly therefore still
//!   gets in while an attacker holds every slot with unfinished heads; a slow legitimate
//!   client may be closed under such an attack, and retries.
//! - Each pending connection's head is further bounded by `max_request_head_bytes` (hyper
//!   answers `431 Request Header Fields Too Large` and closes) and `handshake_timeout_ms`
//!   (hyper closes; counted in `handshake_timeouts`).
//!
//! So the memory held by connections before authentication is bounded by about
//! `max_pending_connections × (max_request_head_bytes + a task)`.
//!
//! # Cost
//!
//! One mutex-protected `BTreeMap` insert and remove per request head, off the engine's
//! publish path. The ids grow monotonically, so the first key is the oldest pending
//! connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::metrics::{ServerMetrics, inc};

/// The node's pending connections. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct PendingHeads {
    /// Pending connections by registration id (oldest first), each with its eviction signal.
    map: Mutex<BTreeMap<u64, Arc<Notify>>>,
    /// The next registration id. `Relaxed`: only uniqueness and order under the map's lock
    /// matter, and the lock orders the inserts.
    next: AtomicU64,
    /// `max_pending_connections`.
    cap: usize,
    metrics: Arc<ServerMetrics>,
}

impl PendingHeads {
    /// A registry holding at most `cap` (at least 1) pending connections.
    pub(crate) fn new(cap: usize, metrics: Arc<ServerMetrics>) -> Arc<PendingHeads> {
        Arc::new(PendingHeads {
            map: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            cap: cap.max(1),
            metrics,
        })
    }

    /// Registers a pending connection; evicts the oldest one if over the cap. O(log n).
    fn insert(&self, evict: &Arc<Notify>) -> u64 {
        let (id, evicted, len) = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            let id = self.next.fetch_add(1, Relaxed);
            map.insert(id, Arc::clone(evict));
            let evicted = if map.len() > self.cap {
                map.pop_first()
            } else {
                None
            };
            (id, evicted, map.len())
        };
        self.metrics.pending_heads.store(len as u64, Relaxed);
        if let Some((_, victim)) = evicted {
            // `notify_one` stores a permit if the victim is not waiting yet: not lost.
            victim.notify_one();
            inc(&self.metrics.pending_evicted);
        }
        id
    }

    /// Deregisters `id` (no-op if it was evicted). O(log n).
    fn remove(&self, id: u64) {
        let len = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.remove(&id);
            map.len()
        };
        self.metrics.pending_heads.store(len as u64, Relaxed);
    }
}

/// One connection's place in [`PendingHeads`]; deregisters when dropped.
#[derive(Debug)]
pub(crate) struct PendingTicket {
    heads: Arc<PendingHeads>,
    /// The current registration, `None` while a request is being handled.
    id: Mutex<Option<u64>>,
    /// Signalled when this connection is evicted.
    evict: Arc<Notify>,
}

impl PendingTicket {
    /// A newly accepted connection, pending at once.
    pub(crate) fn new(heads: &Arc<PendingHeads>) -> Arc<PendingTicket> {
        let evict = Arc::new(Notify::new());
        let id = heads.insert(&evict);
        Arc::new(PendingTicket {
            heads: Arc::clone(heads),
            id: Mutex::new(Some(id)),
            evict,
        })
    }

    /// The request head is complete: no longer pending.
    pub(crate) fn head_arrived(&self) {
        let id = self.id.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(id) = id {
            self.heads.remove(id);
        }
    }

    /// The connection waits for its next request head again (keep-alive).
    pub(crate) fn awaiting_head(&self) {
        let mut id = self.id.lock().unwrap_or_else(|e| e.into_inner());
        if id.is_none() {
            *id = Some(self.heads.insert(&self.evict));
        }
    }

    /// Resolves when this connection was evicted. Cancel-safe.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for PendingTicket {
    fn drop(&mut self) {
        let id = self.id.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(id) = id {
            self.heads.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_pending_connection_is_evicted_beyond_the_cap() {
        let heads = PendingHeads::new(2, Arc::default());
        let a = PendingTicket::new(&heads);
        let b = PendingTicket::new(&heads);
        let c = PendingTicket::new(&heads);
        tokio::time::timeout(std::time::Duration::from_secs(1), a.evicted())
            .await
            .expect("the oldest is evicted");
        assert_eq!(heads.metrics.pending_evicted.load(Relaxed), 1);
        assert_eq!(heads.metrics.pending_heads.load(Relaxed), 2);
        // b got its head: a new connection now fits without evicting c.
        b.head_arrived();
        let _d = PendingTicket::new(&heads);
        assert_eq!(heads.metrics.pending_evicted.load(Relaxed), 1);
        drop(c);
        assert_eq!(heads.metrics.pending_heads.load(Relaxed), 1);
        b.awaiting_head();
        assert_eq!(heads.metrics.pending_heads.load(Relaxed), 2);
    }
}
