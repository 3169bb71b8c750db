//! Run tracking: the lifecycle of each (user, run) on the user's home shard.
//!
//! A user's runs live in its shard's user state ([`UserRuns`]), so they are touched only by
//! that shard's worker (no lock) and leave with the user's state when an idle user is evicted
//! after `user_ttl` (see [`crate::shard`]). The shard-wide part ([`RunTracker`]) holds the
//! compiled [rules](crate::enrich), the learned tool durations, the expiry queues and the
//! counters.
//!
//! # Lifecycle
//!
//! `agent_started` opens a run. `agent_completed` closes it, and so does an `agent_error`
//! whose severity reaches [`closing_severity`](crate::config::EnrichmentConfig) (or whose
//! data says `"fatal": true`; `"fatal": false` keeps the run open). `tool_executing` adds a
//! running tool; `tool_completed` removes the matching one (same `tool`, and same `call_id`
//! when given; the oldest such call otherwise) and yields its `duration_ms`.
//!
//! Events that break the lifecycle are delivered anyway, flagged `meta.lifecycle` and counted
//! (`lifecycle_violations`); they never change the run's state:
//! `unstarted_run` (an agent event of a run not tracked: never started, or evicted),
//! `after_end` (any event of a finished run, `agent_started` included: a finished run id is
//! not reused until it is evicted), `already_started` (`agent_started` of a live run),
//! `tool_not_executing` (`tool_completed` naming a tool that has no matching running call).
//! A `tool_completed` without a `tool` (AG-UI's `TOOL_CALL_END` and `TOOL_CALL_RESULT`) is
//! paired by `call_id` when that call is running and is never flagged. Custom event
//! types with a `run_id` get `elapsed_ms` when their run is tracked and are never flagged.
//!
//! # Bounds
//!
//! - A finished run is evicted `finished_run_ttl` after it finished; a live run with no event
//!   for `idle_run_ttl` is evicted as abandoned.
//! - A user holds at most `max_runs_per_user` runs: a new `agent_started` beyond it evicts the
//!   user's oldest finished run, else its least recently active live run. Later events of an
//!   evicted run are flagged `unstarted_run`.
//! - A run tracks at most `max_tools_per_run` running tools (the oldest is forgotten).
//! - Learned durations: at most `max_learned_tools` tool names per shard.
//! - The expiry queues hold one entry per start or finish; stale entries (runs gone, or the
//!   live entry of a finished run) are dropped at a housekeeping tick once the queues outgrow
//!   `2 × runs + 1,024`, which leaves at most `runs` entries (amortized O(1) per entry).
//!
//! So memory is `O(users × max_runs_per_user)`, and the users themselves are bounded by the
//! engine's user TTL.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ahash::RandomState;
use bytes::BytesMut;

use crate::config::EnrichmentConfig;
use crate::enrich::rules::{Lifecycle, MAX_NAME, Rules, RunView, Said, write_meta};
use crate::event::{Event, EventKind, UserId};

pub(crate) mod enricher;

/// A tool call in progress.
#[derive(Debug)]
struct RunningTool {
    name: Box<str>,
    call_id: Option<Box<str>>,
    since_ms: u64,
}

/// One tracked run.
#[derive(Debug)]
struct Run {
    id: Arc<str>,
    /// Hash of `id` (the tracker's hasher): compared before the bytes.
    id_hash: u64,
    /// Unique per shard: tells a queue entry of this run from one of an earlier run that had
    /// the same id.
    generation: u64,
    started_ms: u64,
    last_ms: u64,
    expected_ms: u64,
    finished_ms: Option<u64>,
    tools: Vec<RunningTool>,
}

/// The runs of one user (kept in the user's state on its home shard). Few per user, so a
/// vector searched linearly (at most `max_runs_per_user` entries).
#[derive(Debug, Default)]
pub(crate) struct UserRuns {
    runs: Vec<Run>,
}

impl UserRuns {
    /// Runs held.
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }

    /// Newest runs are at the back and the likeliest targets: search from there.
    fn position(&self, id: &str, id_hash: u64) -> Option<usize> {
        self.runs
            .iter()
            .rposition(|r| r.id_hash == id_hash && &*r.id == id)
    }

    /// Whether run `id` of `generation` is held, and finished or not as `finished` says.
    fn holds(&self, id: &str, generation: u64, finished: bool) -> bool {
        self.runs.iter().any(|r| {
            r.generation == generation && r.finished_ms.is_some() == finished && &*r.id == id
        })
    }
}

/// Gives the tracker access to a user's runs during housekeeping (implemented by the shard's
/// user table).
pub(crate) trait RunHost {
    /// The runs of `user`, if the user still has state.
    fn runs_of(&mut self, user: &UserId) -> Option<&mut UserRuns>;
}

/// An expiry-queue entry.
#[derive(Debug)]
struct RunRef {
    user: UserId,
    run: Arc<str>,
    generation: u64,
    at_ms: u64,
}

/// Counter deltas of run tracking, taken by the shard when it publishes its counters.
#[derive(Debug, Default)]
pub(crate) struct RunTally {
    pub(crate) runs_started: u64,
    pub(crate) runs_finished: u64,
    pub(crate) runs_errored: u64,
    pub(crate) run_duration_ms_total: u64,
    pub(crate) tool_calls: u64,
    pub(crate) tool_calls_completed: u64,
    pub(crate) runs_evicted: u64,
    pub(crate) lifecycle_violations: u64,
}

/// The shard-wide part of run tracking. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct RunTracker {
    pub(crate) rules: Rules,
    /// Hashes run ids for [`UserRuns::position`].
    hasher: RandomState,
    /// Learned durations per tool name (ms, unrounded).
    estimates: HashMap<Box<str>, f64, RandomState>,
    /// Finished runs, in finish order.
    finished: VecDeque<RunRef>,
    /// Live runs, re-queued at their last activity when checked too early.
    live: VecDeque<RunRef>,
    next_generation: u64,
    /// Runs held over all users of the shard.
    held: usize,
    pub(crate) tally: RunTally,
    /// The `"meta":{…}` of the event being published; reused (no allocation once warm).
    meta: BytesMut,
    /// Sees only part of each user's events (a cluster node sees those published through
    /// it): an event of a run it never saw start is not flagged `unstarted_run`.
    pub(crate) partial: bool,
}

impl RunTracker {
    pub(crate) fn new(cfg: &EnrichmentConfig) -> RunTracker {
        RunTracker {
            rules: Rules::new(cfg),
            hasher: RandomState::new(),
            estimates: HashMap::default(),
            finished: VecDeque::new(),
            live: VecDeque::new(),
            next_generation: 0,
            held: 0,
            tally: RunTally::default(),
            meta: BytesMut::with_capacity(256),
            partial: false,
        }
    }

    /// Runs held over all users.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Entries of the expiry queues.
    pub(crate) fn queued(&self) -> usize {
        self.finished.len() + self.live.len()
    }

    /// Tool names with a learned duration.
    pub(crate) fn learned_tools(&self) -> usize {
        self.estimates.len()
    }

    /// The user's state is gone (evicted): its runs with it.
    pub(crate) fn forget_user(&mut self, runs: &UserRuns) {
        self.held -= runs.len();
    }

    fn estimate(&self, tool: &str) -> Option<u64> {
        match self.estimates.get(tool) {
            Some(v) => Some(v.round() as u64),
            None => self.rules.tool(tool).and_then(|t| t.prior_ms),
        }
    }

    fn learn(&mut self, tool: &str, duration_ms: u64) {
        let w = self.rules.weight;
        let d = duration_ms as f64;
        if let Some(v) = self.estimates.get_mut(tool) {
            *v += w * (d - *v);
        } else if self.estimates.len() < self.rules.max_learned_tools {
            let v = match self.rules.tool(tool).and_then(|t| t.prior_ms) {
                Some(prior) => prior as f64 + w * (d - prior as f64),
                None => d,
            };
            self.estimates.insert(Box::from(tool), v);
        }
    }

    /// Tracks a user event of `user` at `ts_ms` and returns its `"meta":{…}` member, or
    /// `None` when there is nothing to add (or enrichment is disabled). Once per publish.
    pub(crate) fn observe(
        &mut self,
        user: &UserId,
        runs: &mut UserRuns,
        event: &Event,
        ts_ms: u64,
    ) -> Option<&[u8]> {
        // Message events carry no `meta` (and a token stream pays no run lookup).
        if !self.rules.enabled || event.kind.is_message() {
            return None;
        }
        let run_id = event.run_id.as_ref()?;
        // A test clock, when configured, replaces the publish timestamp (one predictable
        // branch: `None` outside tests).
        let ts_ms = self.rules.clock.as_ref().map_or(ts_ms, |c| c.now_ms());
        let kind = &event.kind;
        let said = Said::read(kind, event.data.as_bytes());
        let mut view = RunView::default();
        let id_hash = self.hasher.hash_one(&**run_id);
        let pos = runs.position(run_id, id_hash);
        if let Some(i) = pos {
            let r = &mut runs.runs[i];
            view.elapsed_ms = Some(ts_ms.saturating_sub(r.started_ms));
            view.expected_ms = Some(r.expected_ms);
            if r.finished_ms.is_none() {
                r.last_ms = r.last_ms.max(ts_ms);
            }
        }
        let finished = pos.is_some_and(|i| runs.runs[i].finished_ms.is_some());
        view.lifecycle = match (kind, pos) {
            (EventKind::Custom(_), _) => None,
            (EventKind::AgentStarted, None) => {
                self.start(user, runs, run_id, id_hash, said.expected_ms, ts_ms);
                view.elapsed_ms = Some(0);
                None
            }
            (EventKind::AgentStarted, Some(_)) if finished => Some(Lifecycle::AfterEnd),
            (EventKind::AgentStarted, Some(_)) => Some(Lifecycle::AlreadyStarted),
            // Only on the violation path: no cost for tracked runs.
            (_, None) if self.partial => None,
            (_, None) => Some(Lifecycle::UnstartedRun),
            (_, Some(_)) if finished => Some(Lifecycle::AfterEnd),
            (_, Some(i)) => self.advance(user, &mut runs.runs[i], kind, &said, ts_ms, &mut view),
        };
        if view.lifecycle.is_some() {
            self.tally.lifecycle_violations += 1;
        }
        // Stateless members of flagged events too: catalog estimate, error classification.
        if *kind == EventKind::ToolExecuting && view.estimated_ms.is_none() {
            view.estimated_ms = said.tool.as_deref().and_then(|t| self.estimate(t));
        }
        if *kind == EventKind::AgentError && view.error.is_none() {
            let i = self.rules.classify(&said);
            let fatal = said
                .fatal
                .unwrap_or(self.rules.severity(i) >= self.rules.closing);
            view.error = Some((i, fatal));
        }
        write_meta(&self.rules, kind, &said, &view, &mut self.meta).then_some(&self.meta[..])
    }

    /// Opens run `id` (the caller checked it is not held).
    fn start(
        &mut self,
        user: &UserId,
        runs: &mut UserRuns,
        id: &Arc<str>,
        id_hash: u64,
        expected_ms: Option<u64>,
        ts_ms: u64,
    ) {
        if runs.runs.len() >= self.rules.max_runs_per_user {
            // Oldest finished run first, else the least recently active live one.
            let victim = runs
                .runs
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| match r.finished_ms {
                    Some(f) => (0, f),
                    None => (1, r.last_ms),
                })
                .map(|(i, _)| i);
            if let Some(i) = victim {
                runs.runs.swap_remove(i);
                self.held -= 1;
                self.tally.runs_evicted += 1;
            }
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        runs.runs.push(Run {
            id: Arc::clone(id),
            id_hash,
            generation,
            started_ms: ts_ms,
            last_ms: ts_ms,
            expected_ms: expected_ms.unwrap_or(self.rules.expected_ms).max(1),
            finished_ms: None,
            tools: Vec::new(),
        });
        self.held += 1;
        self.tally.runs_started += 1;
        self.live.push_back(RunRef {
            user: user.clone(),
            run: Arc::clone(id),
            generation,
            at_ms: ts_ms,
        });
    }

    /// An in-order event of live run `r`.
    fn advance(
        &mut self,
        user: &UserId,
        r: &mut Run,
        kind: &EventKind,
        said: &Said<'_>,
        ts_ms: u64,
        view: &mut RunView,
    ) -> Option<Lifecycle> {
        match kind {
            EventKind::ToolExecuting => {
                if let Some(tool) = said.tool.as_deref() {
                    if r.tools.len() >= self.rules.max_tools_per_run {
                        r.tools.remove(0);
                    }
                    r.tools.push(RunningTool {
                        name: Box::from(tool),
                        call_id: said.call_id.as_deref().map(Box::from),
                        since_ms: ts_ms,
                    });
                    view.estimated_ms = self.estimate(tool);
                    self.tally.tool_calls += 1;
                }
                None
            }
            EventKind::ToolCompleted => {
                let call = said.call_id.as_deref();
                let i = match said.tool.as_deref() {
                    Some(tool) => {
                        let i = r.tools.iter().position(|t| {
                            &*t.name == tool && (call.is_none() || t.call_id.as_deref() == call)
                        });
                        let Some(i) = i else {
                            return Some(Lifecycle::ToolNotExecuting);
                        };
                        i
                    }
                    // No tool name (AG-UI's TOOL_CALL_END and TOOL_CALL_RESULT carry only the
                    // call's id): paired by `call_id` when that call is running, else left
                    // alone, unflagged (RESULT follows END, so the call is usually gone).
                    None => r
                        .tools
                        .iter()
                        .position(|t| call.is_some() && t.call_id.as_deref() == call)?,
                };
                let t = r.tools.remove(i);
                let d = ts_ms.saturating_sub(t.since_ms);
                view.duration_ms = Some(d);
                self.tally.tool_calls_completed += 1;
                if t.name.len() <= MAX_NAME {
                    self.learn(&t.name, d);
                }
                None
            }
            EventKind::AgentCompleted => {
                self.finish(user, r, ts_ms);
                None
            }
            EventKind::AgentError => {
                let i = self.rules.classify(said);
                let fatal = said
                    .fatal
                    .unwrap_or(self.rules.severity(i) >= self.rules.closing);
                view.error = Some((i, fatal));
                if fatal {
                    self.finish(user, r, ts_ms);
                    self.tally.runs_errored += 1;
                }
                None
            }
            EventKind::AgentStarted
            | EventKind::AgentThinking
            | EventKind::MessageStarted
            | EventKind::MessageDelta
            | EventKind::MessageCompleted
            | EventKind::Custom(_) => None,
        }
    }

    fn finish(&mut self, user: &UserId, r: &mut Run, ts_ms: u64) {
        r.finished_ms = Some(ts_ms);
        r.tools = Vec::new();
        self.tally.runs_finished += 1;
        self.tally.run_duration_ms_total += ts_ms.saturating_sub(r.started_ms);
        self.finished.push_back(RunRef {
            user: user.clone(),
            run: Arc::clone(&r.id),
            generation: r.generation,
            at_ms: ts_ms,
        });
    }

    /// Evicts finished runs past their TTL and abandoned live runs, then compacts the queues.
    /// Called by the shard's housekeeping.
    pub(crate) fn expire(&mut self, now_ms: u64, host: &mut impl RunHost) {
        let now_ms = self.rules.clock.as_ref().map_or(now_ms, |c| c.now_ms());
        let ttl = self.rules.finished_ttl_ms;
        while self
            .finished
            .front()
            .is_some_and(|e| now_ms.saturating_sub(e.at_ms) >= ttl)
        {
            let Some(e) = self.finished.pop_front() else {
                break;
            };
            let Some(runs) = host.runs_of(&e.user) else {
                continue;
            };
            if let Some(i) = runs
                .runs
                .iter()
                .position(|r| r.generation == e.generation && r.finished_ms.is_some())
            {
                runs.runs.swap_remove(i);
                self.held -= 1;
                self.tally.runs_evicted += 1;
            }
        }
        let idle = self.rules.idle_ttl_ms;
        // Each entry is looked at most once per call: re-queued entries go to the back.
        for _ in 0..self.live.len() {
            if self
                .live
                .front()
                .is_none_or(|e| now_ms.saturating_sub(e.at_ms) < idle)
            {
                break;
            }
            let Some(e) = self.live.pop_front() else {
                break;
            };
            let Some(runs) = host.runs_of(&e.user) else {
                continue;
            };
            let Some(i) = runs.runs.iter().position(|r| r.generation == e.generation) else {
                continue;
            };
            let r = &runs.runs[i];
            if r.finished_ms.is_some() {
                continue; // the finished queue owns it now
            }
            if now_ms.saturating_sub(r.last_ms) < idle {
                let at_ms = r.last_ms;
                self.live.push_back(RunRef { at_ms, ..e });
                continue;
            }
            runs.runs.swap_remove(i);
            self.held -= 1;
            self.tally.runs_evicted += 1;
        }
        if self.held == 0 {
            // Every entry refers to a run already gone.
            self.finished = VecDeque::new();
            self.live = VecDeque::new();
        } else if self.queued() > 2 * self.held + 1_024 {
            // A live run has one valid entry (in `live`), a finished one one (in `finished`),
            // so what survives is at most `held`: compaction is amortized O(1) per push.
            let mut valid = |e: &RunRef, finished: bool| {
                host.runs_of(&e.user)
                    .is_some_and(|u| u.holds(&e.run, e.generation, finished))
            };
            self.finished.retain(|e| valid(e, true));
            self.live.retain(|e| valid(e, false));
            self.finished.shrink_to_fit();
            self.live.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Data;

    struct Users(HashMap<UserId, UserRuns>);

    impl RunHost for Users {
        fn runs_of(&mut self, user: &UserId) -> Option<&mut UserRuns> {
            self.0.get_mut(user)
        }
    }

    #[test]
    fn millions_of_runs_keep_every_table_bounded() {
        let cfg = EnrichmentConfig {
            max_runs_per_user: 8,
            finished_run_ttl: std::time::Duration::from_millis(10),
            idle_run_ttl: std::time::Duration::from_millis(100),
            ..EnrichmentConfig::default()
        };
        let mut t = RunTracker::new(&cfg);
        let mut users = Users(HashMap::new());
        let ids: Vec<UserId> = (0..100)
            .map(|i| UserId::new(&format!("u{i}")).unwrap())
            .collect();
        const RUNS: u64 = 2_000_000;
        let mut max_queued = 0;
        for n in 0..RUNS {
            let u = &ids[(n % 100) as usize];
            let run: Arc<str> = Arc::from(format!("r{n}"));
            let runs = users.0.entry(u.clone()).or_default();
            let ts = n / 1_000; // 1,000 runs per ms
            let start = Event::new(EventKind::AgentStarted, Arc::clone(&run), Data::empty());
            t.observe(u, runs, &start, ts);
            // Two runs in three finish; the rest are abandoned.
            if n % 3 != 0 {
                let done = Event::new(EventKind::AgentCompleted, run, Data::empty());
                t.observe(u, runs, &done, ts);
            }
            if n % 1_000 == 999 {
                t.expire(ts, &mut users);
                max_queued = max_queued.max(t.queued());
                assert!(t.held() <= 100 * 8);
            }
        }
        assert_eq!(t.held(), users.0.values().map(UserRuns::len).sum::<usize>());
        assert!(
            max_queued <= 2 * 800 + 1_024 + 2_000,
            "queues grew to {max_queued}"
        );
        t.expire(RUNS, &mut users);
        assert_eq!((t.held(), t.queued()), (0, 0));
        assert_eq!(t.tally.runs_started, RUNS);
    }
}
