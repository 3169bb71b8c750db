//! Enrichment in cluster mode (`docs/cluster.md` §1.4): `meta` is part of the stored frame,
//! so the publishing node computes it before the payload goes to Redis, from the runs
//! published *through this node*. The common case, one backend process per run on a
//! keep-alive connection to one node, gets the same `meta` as embedded (`elapsed_ms`,
//! durations, lifecycle flags). A run this node never saw start is unknown, not a violation:
//! its events get the stateless members only ([`Enricher::partial`]).
//!
//! Striped 64 ways by user, so concurrent publishes of different users rarely share a lock.

use std::hash::BuildHasher;
use std::sync::Mutex;

use agentcast_engine::{Enricher, EnrichmentConfig, Event, UserId};

const STRIPES: usize = 64;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Enrichers {
    stripes: Box<[Mutex<Enricher>]>,
    hasher: std::hash::RandomState,
}

impl Enrichers {
    pub(crate) fn new(cfg: &EnrichmentConfig) -> Enrichers {
        Enrichers {
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(Enricher::partial(cfg)))
                .collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The `"meta":{…}` member of `event` of `user` published at `ts_ms`, if any.
    pub(crate) fn meta(&self, user: &UserId, event: &Event, ts_ms: u64) -> Option<Vec<u8>> {
        let i = self.hasher.hash_one(user.as_str()) as usize % STRIPES;
        let mut e = self.stripes[i].lock().unwrap_or_else(|e| e.into_inner());
        e.meta(user, event, ts_ms).map(<[u8]>::to_vec)
    }

    /// Evicts runs past their TTLs (called every few hundred ms by the link).
    pub(crate) fn expire(&self, now_ms: u64) {
        for s in self.stripes.iter() {
            s.lock().unwrap_or_else(|e| e.into_inner()).expire(now_ms);
        }
    }
}
