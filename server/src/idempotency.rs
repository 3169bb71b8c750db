//! Idempotency keys of the publish API: a publish repeated with the same `idempotency_key`
//! within the window returns the first publish's receipt and publishes nothing again.
//!
//! # Semantics
//!
//! - Keys are global to the node (the API key is one per deployment). The first request with
//!   a key publishes; concurrent repeats wait for its receipt instead of publishing.
//! - A publish that failed (hub shut down) leaves no receipt: the next repeat publishes.
//! - The payload of a repeat is not compared with the first one; the first one wins.
//!
//! # Memory
//!
//! At most `max_keys` keys are held; when full the oldest is forgotten first, and keys older
//! than the window are dropped whenever a new key is inserted. So memory is bounded by
//! `max_keys × (key + receipt)` whatever publishers send. Not shared across nodes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentcast_engine::Receipt;
use tokio::sync::OnceCell;

/// The receipt slot of one key: initialised by the first publish.
pub type Slot = Arc<OnceCell<Receipt>>;

/// Bounded map of idempotency keys with expiry. See the [module docs](self).
#[derive(Debug)]
pub struct IdempotencyCache {
    inner: Mutex<Inner>,
    window: Duration,
    max_keys: usize,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Arc<str>, (Instant, Slot)>,
    /// Insertion order; an element whose instant no longer matches the map is stale.
    order: VecDeque<(Instant, Arc<str>)>,
}

impl IdempotencyCache {
    /// A cache remembering keys for `window`, at most `max_keys` of them.
    pub fn new(window: Duration, max_keys: usize) -> IdempotencyCache {
        IdempotencyCache {
            inner: Mutex::new(Inner::default()),
            window,
            max_keys: max_keys.max(1),
        }
    }

    /// The slot of `key`: the existing one within the window, else a new empty one.
    /// O(1) amortised.
    pub fn slot(&self, key: &Arc<str>) -> Slot {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { map, order } = &mut *inner;
        while let Some((at, _)) = order.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            pop_front(map, order);
        }
        if let Some((at, slot)) = map.get(key) {
            if now.duration_since(*at) < self.window {
                return Arc::clone(slot);
            }
        }
        while map.len() >= self.max_keys && !order.is_empty() {
            pop_front(map, order);
        }
        let slot = Slot::default();
        map.insert(Arc::clone(key), (now, Arc::clone(&slot)));
        order.push_back((now, Arc::clone(key)));
        slot
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn pop_front(
    map: &mut HashMap<Arc<str>, (Instant, Slot)>,
    order: &mut VecDeque<(Instant, Arc<str>)>,
) {
    if let Some((at, key)) = order.pop_front() {
        if map.get(&key).is_some_and(|(t, _)| *t == at) {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn same_key_shares_a_slot_within_the_window() {
        let c = IdempotencyCache::new(Duration::from_secs(60), 10);
        let a = c.slot(&key("k"));
        let b = c.slot(&key("k"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c.slot(&key("other"))));
    }

    #[test]
    fn memory_is_bounded_by_max_keys() {
        let c = IdempotencyCache::new(Duration::from_secs(60), 100);
        for i in 0..10_000 {
            c.slot(&key(&i.to_string()));
        }
        assert_eq!(c.len(), 100);
        assert!(c.inner.lock().unwrap().order.len() <= 100);
    }

    #[test]
    fn keys_expire_after_the_window() {
        let c = IdempotencyCache::new(Duration::from_millis(1), 10);
        let a = c.slot(&key("k"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!Arc::ptr_eq(&a, &c.slot(&key("k"))));
        assert_eq!(c.len(), 1);
    }
}
