//! What a shard counts: the per-batch counter deltas ([`Tally`], flushed to the shared
//! counters by `Shard::flush_counters`) and the sizes of its tables ([`Footprint`]).

use crate::stats::{KINDS, ShardCounters};

use super::{Shard, ukey};

/// Counter deltas accumulated during a command batch.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) published_user: u64,
    pub(super) published_channel: u64,
    pub(super) published_broadcast: u64,
    pub(super) published_by_priority: [u64; 3],
    pub(super) delivered: u64,
    pub(super) replayed: u64,
    pub(super) handed: u64,
    pub(super) direct_writes: u64,
    pub(super) gaps: u64,
    /// Cluster mode: delivered events whose seq the shard had seen (dropped).
    pub(super) sequenced_duplicates: u64,
    /// Cluster mode: delivered events after missing seqs (a `gap` was sent).
    pub(super) sequenced_holes: u64,
    pub(super) forced_closes: u64,
    pub(super) acks: u64,
    pub(super) escalated: u64,
    pub(super) escalations_dropped: u64,
    pub(super) escalations_skipped: u64,
    pub(super) users_evicted: u64,
    pub(super) users_evicted_over_limit: u64,
    pub(super) seq_clock_waits: u64,
    pub(super) merged: u64,
    pub(super) history_merged: u64,
    pub(super) connects: u64,
    pub(super) disconnects: u64,
    pub(super) dropped: [u64; 3],
    pub(super) coalesced: [u64; 3],
    pub(super) published_by_kind: [u64; KINDS],
    pub(super) delivered_by_kind: [u64; KINDS],
    pub(super) restart_closes: u64,
    pub(super) shutdown_unwritten: u64,
}

/// Sizes of every table of a shard, for proving memory returns to baseline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Footprint {
    /// Registered connections.
    pub connections: usize,
    /// Users with state.
    pub users: usize,
    /// History events held over all users.
    pub history_events: usize,
    /// Channels with subscribers.
    pub channels: usize,
    /// Entries of the idle-user queue.
    pub idle_queue: usize,
    /// Pending ack deadlines.
    pub deadlines: usize,
    /// Frames waiting in rings.
    pub backlog: usize,
    /// Runs tracked (live or finished, not yet evicted).
    pub runs: usize,
    /// Entries of the run expiry queues.
    pub run_queue: usize,
}

impl std::ops::AddAssign for Footprint {
    fn add_assign(&mut self, o: Footprint) {
        self.connections += o.connections;
        self.users += o.users;
        self.history_events += o.history_events;
        self.channels += o.channels;
        self.idle_queue += o.idle_queue;
        self.deadlines += o.deadlines;
        self.backlog += o.backlog;
        self.runs += o.runs;
        self.run_queue += o.run_queue;
    }
}

impl Shard {
    /// Publishes the batch's counter deltas and the gauges.
    pub(crate) fn flush_counters(&mut self, counters: &ShardCounters) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &counters.worker;
        let t = std::mem::take(&mut self.tally);
        macro_rules! add {
            ($($f:ident),*) => { $( if t.$f != 0 { c.$f.fetch_add(t.$f, Relaxed); } )* };
        }
        add!(
            published_user,
            published_channel,
            published_broadcast,
            delivered,
            replayed,
            handed,
            direct_writes,
            gaps,
            forced_closes,
            acks,
            escalated,
            escalations_dropped,
            escalations_skipped,
            restart_closes,
            shutdown_unwritten,
            users_evicted,
            users_evicted_over_limit,
            seq_clock_waits,
            sequenced_duplicates,
            sequenced_holes,
            connects,
            disconnects
        );
        if t.merged != 0 {
            c.deltas_merged.fetch_add(t.merged, Relaxed);
        }
        if t.history_merged != 0 {
            c.history_deltas_merged.fetch_add(t.history_merged, Relaxed);
        }
        let r = std::mem::take(&mut self.runs.tally);
        macro_rules! add_runs {
            ($($f:ident),*) => { $( if r.$f != 0 { c.$f.fetch_add(r.$f, Relaxed); } )* };
        }
        add_runs!(
            runs_started,
            runs_finished,
            runs_errored,
            run_duration_ms_total,
            tool_calls,
            tool_calls_completed,
            runs_evicted,
            lifecycle_violations
        );
        c.runs.store(self.runs.held() as u64, Relaxed);
        c.learned_tools
            .store(self.runs.learned_tools() as u64, Relaxed);
        for i in 0..3 {
            if t.dropped[i] != 0 {
                c.dropped[i].fetch_add(t.dropped[i], Relaxed);
            }
            if t.coalesced[i] != 0 {
                c.coalesced[i].fetch_add(t.coalesced[i], Relaxed);
            }
            if t.published_by_priority[i] != 0 {
                c.published_by_priority[i].fetch_add(t.published_by_priority[i], Relaxed);
            }
        }
        for i in 0..KINDS {
            if t.published_by_kind[i] != 0 {
                c.published_by_kind[i].fetch_add(t.published_by_kind[i], Relaxed);
            }
            if t.delivered_by_kind[i] != 0 {
                c.delivered_by_kind[i].fetch_add(t.delivered_by_kind[i], Relaxed);
            }
        }
        c.connections
            .store((self.conns.len() - self.internal_conns) as u64, Relaxed);
        c.users
            .store((self.users.len() - self.canary_users()) as u64, Relaxed);
        c.channels.store(self.channels.len() as u64, Relaxed);
        c.backlog.store(self.backlog as u64, Relaxed);
        c.unacked_critical.store(self.unacked as u64, Relaxed);
        c.history_bytes.store(self.history_bytes as u64, Relaxed);
        c.history_events.store(self.history_events as u64, Relaxed);
    }

    /// 1 when the canary's user has state here (it is left out of gauges), else 0.
    pub(super) fn canary_users(&self) -> usize {
        self.canary_user
            .as_ref()
            .map_or(0, |u| usize::from(self.users.contains_key(ukey(u))))
    }

    pub(crate) fn footprint(&self) -> Footprint {
        let history_events = self.users.values().map(|u| u.history.len()).sum();
        // The incrementally kept totals agree with the tables (tests read footprints).
        debug_assert_eq!(self.history_events, history_events);
        debug_assert_eq!(
            self.history_bytes,
            self.users
                .values()
                .map(|u| u.history.bytes())
                .sum::<usize>()
        );
        Footprint {
            connections: self.conns.len() - self.internal_conns,
            users: self.users.len() - self.canary_users(),
            history_events,
            channels: self.channels.len(),
            idle_queue: self.idle.len(),
            deadlines: self.deadlines.len(),
            backlog: self.backlog,
            runs: self.runs.held(),
            run_queue: self.runs.queued(),
        }
    }
}
