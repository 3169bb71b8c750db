//! What a shard counts: the per-batch counter deltas ([`Tally`], flushed to the shared
//! counters by `Shard::flush_counters`) and the sizes of its tables ([`Footprint`]).

use crate::stats::KINDS;

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
