//! Idempotency keys of the in-process broker ([`InProcessBroker`](crate::InProcessBroker)),
//! as the publish API uses them: a publish repeated with the same `idempotency_key`
//! within the window returns the first publish's receipt and publishes nothing again.
//!
//! # Semantics
//!
//! - Keys are global to the node (the API key is one per deployment), and each key is bound
//!   to the request it first came with: a [`Fingerprint`] of the parsed request (target,
//!   type, `run_id`, `data` byte for byte, `priority`) is stored with the key.
//! - The same key with the same request: the first request publishes; repeats (concurrent
//!   ones too) wait for its receipt and get it, publishing nothing.
//! - The same key with a different request (another user, channel, type, run, data or
//!   priority) is refused with [`KeyReused`] (the API answers `409`) and changes nothing: a
//!   key cannot silently swallow a different event.
//! - A publish that failed (hub shut down) leaves no receipt: the next identical repeat
//!   publishes.
//!
//! `data` is compared as the bytes sent: `{"a":1}` and `{"a": 1}` are different requests.
//! The order of the body's top-level members does not matter (fields are fingerprinted after
//! parsing), and the same rules apply to each item of a batch.
//!
//! # Memory
//!
//! At most `max_keys` keys are held; when full the oldest is forgotten first, and keys older
//! than the window are dropped whenever a new key is inserted. So memory is bounded by
//! `max_keys × (key + fingerprint + receipt)` whatever publishers send. Not shared across
//! nodes.
//!
//! # Fingerprint
//!
//! 64 bits of SipHash-1-3 (std's [`RandomState`]) keyed with a random key drawn when the
//! cache is created: a publisher cannot craft two different requests with one fingerprint
//! without knowing the key, and an accidental collision has probability 2⁻⁶⁴ per pair.
//! Hashing costs one pass over `data`, and only for publishes that carry a key.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::event::{Event, Target};
use crate::reply::Receipt;
use thiserror::Error;
use tokio::sync::OnceCell;

/// The receipt slot of one key: initialised by the first publish.
pub type Slot = Arc<OnceCell<Receipt>>;

/// A keyed 64-bit hash of one parsed publish request. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

/// The key was first used with a different request: refuse (HTTP 409), publish nothing.
#[derive(Debug, Clone, Error)]
#[error("idempotency_key `{0}` reused with a different request")]
pub struct KeyReused(pub Arc<str>);

/// Bounded map of idempotency keys with expiry. See the [module docs](self).
#[derive(Debug)]
pub struct IdempotencyCache {
    inner: Mutex<Inner>,
    window: Duration,
    max_keys: usize,
    /// The random SipHash key of [`Fingerprint`]s.
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Arc<str>, Entry>,
    /// Insertion order; an element whose instant no longer matches the map is stale.
    order: VecDeque<(Instant, Arc<str>)>,
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    fingerprint: Fingerprint,
    slot: Slot,
}

impl IdempotencyCache {
    /// A cache remembering keys for `window`, at most `max_keys` of them.
    pub fn new(window: Duration, max_keys: usize) -> IdempotencyCache {
        IdempotencyCache {
            inner: Mutex::new(Inner::default()),
            window,
            max_keys: max_keys.max(1),
            hasher: RandomState::new(),
        }
    }

    /// The fingerprint of a request to `target` of `event`. O(size of `data`).
    pub fn fingerprint(&self, target: &Target, event: &Event) -> Fingerprint {
        let mut h = self.hasher.build_hasher();
        request_fields(target, event, |tag, bytes| {
            h.write_u8(tag);
            h.write_usize(bytes.len());
            h.write(bytes);
        });
        Fingerprint(h.finish())
    }

    /// The slot of `key` for a request with `fingerprint`: the existing one within the
    /// window, else a new empty one; [`KeyReused`] when the key is held for a different
    /// request. O(1) amortised.
    pub fn slot(&self, key: &Arc<str>, fingerprint: Fingerprint) -> Result<Slot, KeyReused> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { map, order } = &mut *inner;
        while let Some((at, _)) = order.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            pop_front(map, order);
        }
        if let Some(e) = map.get(key) {
            if now.duration_since(e.at) < self.window {
                if e.fingerprint != fingerprint {
                    return Err(KeyReused(Arc::clone(key)));
                }
                return Ok(Arc::clone(&e.slot));
            }
        }
        while map.len() >= self.max_keys && !order.is_empty() {
            pop_front(map, order);
        }
        let slot = Slot::default();
        map.insert(
            Arc::clone(key),
            Entry {
                at: now,
                fingerprint,
                slot: Arc::clone(&slot),
            },
        );
        order.push_back((now, Arc::clone(key)));
        Ok(slot)
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

fn pop_front(map: &mut HashMap<Arc<str>, Entry>, order: &mut VecDeque<(Instant, Arc<str>)>) {
    if let Some((at, key)) = order.pop_front() {
        if map.get(&key).is_some_and(|e| e.at == at) {
            map.remove(&key);
        }
    }
}

/// Feeds what identifies a request to `target` of `event` to `field`, one `(tag, bytes)`
/// per field. Callers write each field's length before its bytes, so no two distinct
/// requests feed the same byte sequence. The per-process [`IdempotencyCache::fingerprint`]
/// and the server's cluster-wide request hash (SHA-256) both hash this.
pub fn request_fields(target: &Target, event: &Event, mut field: impl FnMut(u8, &[u8])) {
    match target {
        Target::User(u) => field(b'u', u.as_str().as_bytes()),
        Target::Channel(c) => field(b'c', c.as_str().as_bytes()),
        Target::Broadcast => field(b'b', b""),
    }
    field(b't', event.kind.as_str().as_bytes());
    match &event.run_id {
        Some(r) => field(b'r', r.as_bytes()),
        None => field(b'n', b""),
    }
    field(b'd', event.data.as_bytes());
    match event.priority {
        Some(p) => field(b'p', p.as_str().as_bytes()),
        None => field(b'q', b""),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Data, EventKind, UserId};

    use super::*;

    fn key(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn request(user: &str, data: &str) -> (Target, Event) {
        (
            Target::User(UserId::new(user).unwrap()),
            Event::new(
                EventKind::AgentStarted,
                "r",
                Data::from_json(data.to_owned()).unwrap(),
            ),
        )
    }

    fn fp(c: &IdempotencyCache, user: &str, data: &str) -> Fingerprint {
        let (t, e) = request(user, data);
        c.fingerprint(&t, &e)
    }

    #[test]
    fn same_key_and_request_share_a_slot_within_the_window() {
        let c = IdempotencyCache::new(Duration::from_secs(60), 10);
        let f = fp(&c, "u", "{}");
        let a = c.slot(&key("k"), f).unwrap();
        let b = c.slot(&key("k"), f).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c.slot(&key("other"), f).unwrap()));
    }

    #[test]
    fn same_key_with_another_request_is_refused() {
        let c = IdempotencyCache::new(Duration::from_secs(60), 10);
        c.slot(&key("k"), fp(&c, "u", "{}")).unwrap();
        assert!(c.slot(&key("k"), fp(&c, "v", "{}")).is_err());
        assert!(c.slot(&key("k"), fp(&c, "u", "{\"a\":1}")).is_err());
        assert!(c.slot(&key("k"), fp(&c, "u", "{}")).is_ok());
    }

    #[test]
    fn every_field_is_part_of_the_fingerprint() {
        let c = IdempotencyCache::new(Duration::from_secs(60), 10);
        let (t, e) = request("u", "{}");
        let base = c.fingerprint(&t, &e);
        let mut other = e.clone();
        other.kind = EventKind::AgentCompleted;
        assert_ne!(c.fingerprint(&t, &other), base);
        let mut other = e.clone();
        other.run_id = Some(Arc::from("r2"));
        assert_ne!(c.fingerprint(&t, &other), base);
        let mut other = e.clone();
        other.run_id = None;
        assert_ne!(c.fingerprint(&t, &other), base);
        let mut other = e.clone();
        other.priority = Some(crate::Priority::Low);
        assert_ne!(c.fingerprint(&t, &other), base);
        assert_ne!(c.fingerprint(&Target::Broadcast, &e), base);
        let channel = Target::Channel(crate::ChannelName::new("u").unwrap());
        assert_ne!(c.fingerprint(&channel, &e), base);
    }

    #[test]
    fn memory_is_bounded_by_max_keys() {
        let c = IdempotencyCache::new(Duration::from_secs(60), 100);
        let f = fp(&c, "u", "{}");
        for i in 0..10_000 {
            c.slot(&key(&i.to_string()), f).unwrap();
        }
        assert_eq!(c.len(), 100);
        assert!(c.inner.lock().unwrap().order.len() <= 100);
    }

    #[test]
    fn keys_expire_after_the_window() {
        let c = IdempotencyCache::new(Duration::from_millis(1), 10);
        let a = c.slot(&key("k"), fp(&c, "u", "{}")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // Expired: the key is free again, even for another request.
        let b = c.slot(&key("k"), fp(&c, "v", "{}")).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(c.len(), 1);
    }
}
