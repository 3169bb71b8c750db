//! [`Enricher`]: the enrichment a shard applies to each user event, run state included, as a
//! standalone value (see [`crate::enrich`]).

use std::collections::HashMap;

use ahash::RandomState;

use crate::config::EnrichmentConfig;
use crate::event::{Event, UserId};
use crate::runs::{RunHost, RunTracker, UserRuns};

/// The enrichment a shard applies to each user event, as a standalone single-threaded value
/// with its own user table: the same code, for benches and for embedders that encode frames
/// themselves.
///
/// ```
/// use agentcast_engine::{Data, EnrichmentConfig, Enricher, Event, EventKind, UserId};
///
/// let mut e = Enricher::new(&EnrichmentConfig::default());
/// let u = UserId::new("u1").unwrap();
/// let start = Event::new(EventKind::AgentStarted, "r1", Data::empty());
/// assert_eq!(e.meta(&u, &start, 1_000), Some(&br#""meta":{"elapsed_ms":0}"#[..]));
/// let tool = Event::new(
///     EventKind::ToolExecuting,
///     "r1",
///     Data::from_json(r#"{"tool":"web_search"}"#).unwrap(),
/// );
/// let meta = String::from_utf8(e.meta(&u, &tool, 1_250).unwrap().to_vec()).unwrap();
/// assert!(meta.starts_with(r#""meta":{"elapsed_ms":250,"category":"search""#));
/// ```
#[derive(Debug)]
pub struct Enricher {
    users: HashMap<UserId, UserRuns, RandomState>,
    tracker: RunTracker,
}

impl RunHost for HashMap<UserId, UserRuns, RandomState> {
    fn runs_of(&mut self, user: &UserId) -> Option<&mut UserRuns> {
        self.get_mut(user)
    }
}

impl Enricher {
    /// Compiles `cfg` (catalog and error texts are pre-encoded once).
    pub fn new(cfg: &EnrichmentConfig) -> Enricher {
        Enricher {
            users: HashMap::default(),
            tracker: RunTracker::new(cfg),
        }
    }

    /// An enricher that sees only part of each user's events, as a cluster node does (those
    /// published through it): a run it never saw start is unknown, not a lifecycle
    /// violation, so its events get the stateless members only (no `elapsed_ms`, no
    /// `lifecycle` flag). Runs it saw start are tracked as [`Enricher::new`] tracks them.
    pub fn partial(cfg: &EnrichmentConfig) -> Enricher {
        let mut e = Enricher::new(cfg);
        e.tracker.partial = true;
        e
    }

    /// Tracks `event` of `user` published at `ts_ms` (ms since the Unix epoch) and returns
    /// its `"meta":{…}` member (for [`EventFields::extra`](crate::frame::EventFields)), or
    /// `None` when there is nothing to add. O(size of `data`'s top level + the user's runs);
    /// no allocation once warm except for new runs, running tools and unknown tool names.
    pub fn meta(&mut self, user: &UserId, event: &Event, ts_ms: u64) -> Option<&[u8]> {
        let runs = self.users.entry(user.clone()).or_default();
        self.tracker.observe(user, runs, event, ts_ms)
    }

    /// Evicts runs past their TTLs as of `now_ms` (the shard does this every tick), then
    /// users left without runs. O(users).
    pub fn expire(&mut self, now_ms: u64) {
        self.tracker.expire(now_ms, &mut self.users);
        self.users.retain(|_, runs| runs.len() > 0);
    }

    /// Runs held (live or finished, not yet evicted).
    pub fn runs(&self) -> usize {
        self.tracker.held()
    }
}
