//! Enrichment in cluster mode (`docs/cluster.md` §1.4): `meta` is part of the stored frame,
//! so the publishing node computes it before the payload goes to Redis, from the runs
//! published *through this node*. The common case, one backend process per run on a
//! keep-alive connection to one node, gets the same `meta` as embedded (`elapsed_ms`,
//! durations, lifecycle flags). A run this node never saw start is unknown, not a violation:
//! its events get the stateless members only ([`Enricher::partial`]).
//!
//! Striped 64 ways by user, so concurrent publishes of different users rarely share a lock.
//!
//! Bounded: runs expire as embedded (`finished_run_ttl`, `idle_run_ttl`), and a stripe that
//! holds more than its share of `max_users` runs forgets them all at once (their later
//! events get the stateless members, as for a run started elsewhere), so a publisher that
//! starts runs for ever new users cannot grow this without bound.

use std::hash::BuildHasher;
use std::sync::Mutex;

use agentcast_engine::{Enricher, EnrichmentConfig, Event, UserId};

const STRIPES: usize = 64;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Enrichers {
    stripes: Box<[Mutex<Enricher>]>,
    hasher: std::hash::RandomState,
    cfg: EnrichmentConfig,
    /// Runs a stripe may hold.
    max_runs: usize,
}

impl Enrichers {
    /// Stripes holding at most `max_runs` runs in all.
    pub(crate) fn new(cfg: &EnrichmentConfig, max_runs: usize) -> Enrichers {
        Enrichers {
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(Enricher::partial(cfg)))
                .collect(),
            hasher: std::hash::RandomState::new(),
            cfg: cfg.clone(),
            max_runs: (max_runs / STRIPES).max(16),
        }
    }

    /// The `"meta":{…}` member of `event` of `user` published at `ts_ms`, if any.
    pub(crate) fn meta(&self, user: &UserId, event: &Event, ts_ms: u64) -> Option<Vec<u8>> {
        let i = self.hasher.hash_one(user.as_str()) as usize % STRIPES;
        let mut e = self.stripes[i].lock().unwrap_or_else(|e| e.into_inner());
        let meta = e.meta(user, event, ts_ms).map(<[u8]>::to_vec);
        if e.runs() > self.max_runs {
            *e = Enricher::partial(&self.cfg);
        }
        meta
    }

    /// Evicts runs past their TTLs (called every few hundred ms by the link).
    pub(crate) fn expire(&self, now_ms: u64) {
        for s in self.stripes.iter() {
            s.lock().unwrap_or_else(|e| e.into_inner()).expire(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentcast_engine::{Data, EventKind};

    #[test]
    fn a_stripe_over_its_share_forgets_its_runs() {
        let e = Enrichers::new(&EnrichmentConfig::default(), 0);
        let user = UserId::new("u").unwrap();
        for i in 0..100 {
            let start = Event::new(EventKind::AgentStarted, format!("r{i}"), Data::empty());
            assert!(e.meta(&user, &start, 1_000).is_some());
        }
        let held: usize = e.stripes.iter().map(|s| s.lock().unwrap().runs()).sum();
        assert!(held <= 16, "{held} runs held");
        // A run it still holds is tracked; one it forgot gets no lifecycle flag.
        let late = Event::new(EventKind::AgentThinking, "r0", Data::empty());
        let meta = e
            .meta(&user, &late, 2_000)
            .map(|m| String::from_utf8(m).unwrap());
        assert!(!meta.unwrap_or_default().contains("lifecycle"));
    }
}
