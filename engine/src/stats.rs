//! Delivery statistics: per-shard counters written by their worker, read by anyone.
//!
//! Each shard owns one [`ShardCounters`] block. Its worker is the only writer of every field
//! except `drained` (written by transports as they take frames), which sits on its own cache
//! line so transports and the worker do not false-share. Workers accumulate per command batch
//! and add once, so the fan-out loop touches no shared counter per recipient. All accesses are
//! `Relaxed`: counters are monotonic tallies and gauges are point-in-time readings; no other
//! memory is published through them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use crate::event::{EventKind, Priority};

/// Slots of the per-type counters: the six agent events, then every custom type.
pub const KINDS: usize = EventKind::SLOTS;

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// The live counters of one shard. See the [module docs](self).
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $( pub(crate) $name: AtomicU64, )*
            /// Frames dropped, by priority (evicted from a ring or refused by it).
            pub(crate) dropped: [AtomicU64; 3],
            /// Frames coalesced, by priority.
            pub(crate) coalesced: [AtomicU64; 3],
            /// Frames published, by priority.
            pub(crate) published_by_priority: [AtomicU64; 3],
            /// Publishes by [`EventKind::index`].
            pub(crate) published_by_kind: [AtomicU64; KINDS],
            /// Deliveries by [`EventKind::index`].
            pub(crate) delivered_by_kind: [AtomicU64; KINDS],
        }

        /// A snapshot of one shard's statistics (or of their sum).
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct ShardStats {
            $( $(#[$doc])* pub $name: u64, )*
            /// Frames dropped, indexed by `Priority as usize` (low, normal, critical).
            pub dropped: [u64; 3],
            /// Frames coalesced (a newer `agent_thinking` replaced a queued one), by priority.
            pub coalesced: [u64; 3],
            /// Publishes that reached this shard, by priority.
            pub published_by_priority: [u64; 3],
            /// Publishes that reached this shard, by type ([`EventKind::index`]; custom
            /// types share the last slot).
            pub published_by_kind: [u64; KINDS],
            /// Frames queued to connections (replays excluded), by type.
            pub delivered_by_kind: [u64; KINDS],
            /// Frames taken by transports (written or about to be).
            pub drained: u64,
        }

        impl Counters {
            pub(crate) fn snapshot(&self, drained: u64) -> ShardStats {
                fn arr<const N: usize>(a: &[AtomicU64; N]) -> [u64; N] {
                    std::array::from_fn(|i| a[i].load(Relaxed))
                }
                ShardStats {
                    $( $name: self.$name.load(Relaxed), )*
                    dropped: arr(&self.dropped),
                    coalesced: arr(&self.coalesced),
                    published_by_priority: arr(&self.published_by_priority),
                    published_by_kind: arr(&self.published_by_kind),
                    delivered_by_kind: arr(&self.delivered_by_kind),
                    drained,
                }
            }
        }

        impl ShardStats {
            fn add(&mut self, o: &ShardStats) {
                $( self.$name += o.$name; )*
                for i in 0..3 {
                    self.dropped[i] += o.dropped[i];
                    self.coalesced[i] += o.coalesced[i];
                    self.published_by_priority[i] += o.published_by_priority[i];
                }
                for i in 0..KINDS {
                    self.published_by_kind[i] += o.published_by_kind[i];
                    self.delivered_by_kind[i] += o.delivered_by_kind[i];
                }
                self.drained += o.drained;
            }
        }
    };
}

counters! {
    /// User-targeted publishes handled.
    published_user,
    /// Channel publishes handled (each shard counts the ones it visited).
    published_channel,
    /// Broadcasts handled (each shard counts the ones it visited).
    published_broadcast,
    /// Frames queued to connections (one per recipient), replays excluded.
    delivered,
    /// Frames queued to connections by history replay on connect.
    replayed,
    /// Resumes that were told of a gap.
    gaps,
    /// Connections closed by the engine because a critical frame found no room (code 1013).
    forced_closes,
    /// Connections closed with 1011 because their shard worker panicked and restarted.
    restart_closes,
    /// Acks received.
    acks,
    /// Critical events escalated after their ack deadline.
    escalated,
    /// Escalations dropped because the hook's queue was full.
    escalations_dropped,
    /// Overdue critical events of never-connected users not escalated (policy
    /// `escalate_never_connected = false`).
    escalations_skipped,
    /// Gauge: critical user events not yet acknowledged.
    unacked_critical,
    /// Gauge: open connections.
    connections,
    /// Gauge: users with state (connected, or idle within their TTL).
    users,
    /// Gauge: channels with at least one subscriber.
    channels,
    /// Gauge: frames waiting in priority rings (not yet handed to transports).
    backlog,
    /// Frames handed to transports' hand-off queues (live and replayed).
    handed,
    /// Frames written whole to sockets by the shard's worker itself, never queued (see
    /// [`crate::sink`]); also in `delivered`, not in `handed`.
    direct_writes,
    /// Users whose state was evicted: after their TTL, or over a bound (those are also in
    /// `users_evicted_over_limit`).
    users_evicted,
    /// Connections opened.
    connects,
    /// Connections closed (by the transport or the engine).
    disconnects,
    /// Runs opened by `agent_started` (see [`crate::runs`]).
    runs_started,
    /// Runs closed by `agent_completed` or a closing `agent_error`.
    runs_finished,
    /// Of `runs_finished`, those closed by an `agent_error`.
    runs_errored,
    /// Sum of the durations (first to last event, ms) of the runs in `runs_finished`: divided
    /// by `runs_finished`, the mean run duration.
    run_duration_ms_total,
    /// `tool_executing` events of tracked live runs (tool calls started).
    tool_calls,
    /// `tool_completed` events paired with a running tool call (tool calls finished).
    tool_calls_completed,
    /// Runs evicted: finished past their TTL, abandoned, or over the per-user cap.
    runs_evicted,
    /// Events delivered with a `meta.lifecycle` flag (they broke their run's lifecycle).
    lifecycle_violations,
    /// Gauge: runs tracked (live or finished, not yet evicted).
    runs,
    /// Gauge: tool names with a learned duration estimate.
    learned_tools,
    /// Users without a connection whose state was evicted early to keep the node within
    /// `max_users` or `max_history_bytes` (see [`crate::HubConfig`]).
    users_evicted_over_limit,
    /// Gauge: bytes held in users' histories (see [`crate::history`] for how they are sized).
    history_bytes,
    /// Gauge: events held in users' histories.
    history_events,
    /// Publishes whose seq had to wait for the clock to stay below the next millisecond's
    /// seq base (a user given more than 1,000 events in one millisecond; see the crate docs).
    seq_clock_waits,
    /// `message_delta` frames merged into a queued delta of the same message because a
    /// connection's ring was full (see [`crate::ring`]): each merge saved a frame, lost no text.
    deltas_merged,
    /// `message_delta` events merged into the previous history entry of their message (see
    /// [`crate::history`]).
    history_deltas_merged,
    /// Frames queued to a connection (ring or hand-off queue) that were never handed to a
    /// socket because the hub stopped, or the transport gave up, during a graceful shutdown.
    shutdown_unwritten,
    /// Publishes refused because the shard's command queue was full (see
    /// [`HubConfig::command_queue`](crate::HubConfig::command_queue)).
    publishes_refused,
    /// Cluster mode: events from the broker whose seq the shard had already seen (the same
    /// event read from Redis and received live), dropped.
    sequenced_duplicates,
    /// Cluster mode: events from the broker after missing seqs; the user's connections got a
    /// `gap` first (see [`crate::broker`]).
    sequenced_holes,
}

/// Per-shard counters plus the transports' drained counter on its own cache line.
#[derive(Debug, Default)]
pub(crate) struct ShardCounters {
    pub(crate) worker: CachePadded<Counters>,
    pub(crate) drained: CachePadded<AtomicU64>,
}

impl ShardStats {
    /// Frames in hand-off queues, not yet taken by transports.
    pub fn in_flight(&self) -> u64 {
        self.handed.saturating_sub(self.drained)
    }

    /// Frames queued to connections (rings and hand-off queues) and not yet taken.
    pub fn queue_depth(&self) -> u64 {
        self.backlog + self.in_flight()
    }
}

impl ShardCounters {
    pub(crate) fn snapshot(&self) -> ShardStats {
        self.worker.snapshot(self.drained.load(Relaxed))
    }
}

/// A snapshot of the hub's statistics: totals and per shard.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Sum over shards.
    pub total: ShardStats,
    /// Per shard, in shard order.
    pub shards: Vec<ShardStats>,
}

impl Stats {
    pub(crate) fn from_shards(shards: Vec<ShardStats>) -> Stats {
        let mut total = ShardStats::default();
        for s in &shards {
            total.add(s);
        }
        Stats { total, shards }
    }

    /// Frames dropped at `p`.
    pub fn dropped(&self, p: Priority) -> u64 {
        self.total.dropped[p as usize]
    }

    /// Frames coalesced at `p`.
    pub fn coalesced(&self, p: Priority) -> u64 {
        self.total.coalesced[p as usize]
    }

    /// Frames queued to connections and not yet taken by transports.
    pub fn queue_depth(&self) -> u64 {
        self.total.queue_depth()
    }
}
