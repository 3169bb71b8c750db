//! A shard: connections, the user → connections index, the channel → connections index and
//! the per-user state (seq, ack cursor, history) of the users hashed to it.
//!
//! A shard is owned by its worker thread and mutated only there, so nothing here locks or
//! uses atomics except to hand frames to transports. A user's connections all live on the
//! user's home shard (`hash(user) % shards`), so a per-user publish costs work on exactly one
//! shard; channel publishes and broadcasts visit every shard once.
//!
//! # Fan-out cost
//!
//! Per recipient: one reference-count increment of the shared frame, one push into the
//! connection's pre-allocated hand-off queue and one `AtomicWaker::wake` — or, for an idle
//! connection whose transport gave a sink, one non-blocking socket write and nothing else
//! (see [`crate::sink`]). No allocation (the
//! rings allocate once, on first overflow, and keep their buffer). Counters are accumulated
//! locally and published once per command batch.
//!
//! # Idle users
//!
//! A user without connections is put on an idle queue with a timestamp; housekeeping pops
//! entries older than `user_ttl` and evicts the user's whole state unless a connection or an
//! event arrived since (then it is re-queued). With `retain_history`, a user with history is
//! kept until the history ages out. So memory returns to baseline once users go away.
//!
//! # Bounds
//!
//! The user table and the history bytes are bounded per shard by `max_users / shards` and
//! `max_history_bytes / shards` (see [`HubConfig`]), each rounded up. Creating a user past the
//! first, or a publish that takes the history bytes past the second, evicts the least
//! recently active user without a connection: the idle queue is in order of when users went
//! idle, and an entry whose user had activity since is re-queued at that time instead of
//! evicted, so the front is (approximately) the least recently active. Its next resume with
//! `last_seq` gets a `gap` (a new state's seqs start above the old ones). If no such user is
//! left, the history bound evicts the oldest events of the user published to (down to not
//! keeping the new one). Both checks are one compare on the publish path; the totals are kept
//! as histories change, so no check walks a table.
//!
//! # Seqs and the clock
//!
//! A new user state's seqs start after `max(now_ms × 1000, seq_floor)`, where `seq_floor` is
//! the highest seq of any state this shard evicted. A seq issued at millisecond `t` is kept
//! below `(t + 1) × 1000`: a user given more than 1,000 events within one millisecond waits
//! for the next one (at most 2 ms with the [`SystemClock`](crate::clock::SystemClock),
//! counted in `seq_clock_waits`). So every seq this process
//! issues is below the base of any state created later, by this process or by the next one
//! after a restart (as long as the wall clock does not step back).
//!
//! The shard reads no clock of its own (see [`crate::clock`]): a publish carries the time
//! its publisher read, the worker hands `Shard::handle` the batch's `Now` and
//! housekeeping its time, and the seq clock cap waits on [`HubConfig::clock`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ahash::RandomState;
use bytes::{BufMut, Bytes, BytesMut};

mod conns;
mod deliver;
mod housekeeping;
mod sequenced;
mod tally;
mod users;

use deliver::{Direct, Parcel, Push, Wakes, deliver, hand_noted, push_frame, refill, write_noted};
pub use tally::Footprint;
use tally::Tally;
use users::{UserState, UserTable, ukey, user_state};

use crate::clock::{Clock, Now};
use crate::command::Command;
use crate::config::HubConfig;
use crate::conn::shared::{ConnId, ConnShared, close_code};
use crate::escalation::EscalationSender;
use crate::event::{ChannelName, Event, EventKind, Priority, UserId};
use crate::frame::{self, EventFields, Frame, FramePool, Origin};
use crate::health::state::{Fault, HealthConfig};
use crate::history::{Gap, HistoryEntry};
use crate::prefetch::prefetch_write;
use crate::reply::Receipt;
use crate::ring::PriorityRing;
use crate::runs::RunTracker;
use crate::slots::Slots;
use crate::stats::{KINDS, ShardCounters};

/// One connection as its shard sees it.
struct ConnEntry {
    id: ConnId,
    user: UserId,
    shared: Arc<ConnShared>,
    /// The address of the hand-off slot the next push fills (kept by [`handoff_push`], the
    /// only producer): the fan-out loop prefetches it without first loading the shared line
    /// that holds the queue's tail.
    next_slot: usize,
    ring: PriorityRing,
    channels: Vec<ChannelName>,
    max_subscriptions: usize,
    /// The health canary's connection: sent no broadcasts, left out of gauges.
    internal: bool,
    /// The transport's socket, once it attached one: frames may be written to it directly
    /// (see [`crate::sink`]).
    sink: Option<Arc<dyn crate::sink::SocketSink>>,
}

/// An ack deadline of a critical event.
struct Deadline {
    due_ms: u64,
    user: UserId,
    seq: u64,
    run_id: Option<Arc<str>>,
    kind: EventKind,
    published_ms: u64,
}

/// See the [module docs](self).
pub(crate) struct Shard {
    cfg: Arc<HubConfig>,
    /// Buffers of frames evicted from histories, reused for new frames (see `FramePool`).
    frame_pool: FramePool,
    conns: Slots<ConnEntry>,
    users: UserTable,
    channels: HashMap<ChannelName, Vec<usize>, RandomState>,
    idle: VecDeque<(UserId, u64)>,
    deadlines: VecDeque<Deadline>,
    escalation: EscalationSender,
    backlog: usize,
    /// Sum of `unacked_critical.len()` over users (kept incrementally: O(1) to report).
    unacked: usize,
    tally: Tally,
    /// Connections whose ring overflowed with a critical frame during the current delivery.
    overflowed: Vec<usize>,
    /// Internal (canary) connections registered.
    internal_conns: usize,
    /// The canary's user, once one connected (left out of the `users` gauge).
    canary_user: Option<UserId>,
    /// [`Fault::DropDeliveries`] in force.
    drop_deliveries: bool,
    /// Run tracking and enrichment of this shard's users' events.
    runs: RunTracker,
    /// This shard's share of [`HubConfig::max_users`].
    user_cap: usize,
    /// This shard's share of [`HubConfig::max_history_bytes`].
    history_cap: usize,
    /// Sum of `history.bytes()` over users (kept as histories change: O(1) to check).
    history_bytes: usize,
    /// Sum of `history.len()` over users (kept likewise).
    history_events: usize,
    /// The highest seq of any user state evicted from this shard (see the module docs).
    seq_floor: u64,
    /// Connections (key and id) the current fan-out will write to directly once its reply is
    /// sent ([`Shard::write_deferred`]), and the frame with its publish time.
    deferred: Vec<(usize, ConnId)>,
    deferred_frame: Option<(Bytes, u64)>,
    /// Graceful shutdown began ([`Shard::begin_drain`]): each connection is closed with 1001
    /// once its ring is empty, and what a connection leaves queued is counted as unwritten.
    draining: bool,
}

impl Shard {
    pub(crate) fn new(cfg: Arc<HubConfig>, escalation: EscalationSender) -> Shard {
        Shard {
            frame_pool: FramePool::default(),
            conns: Slots::new(),
            users: HashMap::default(),
            channels: HashMap::default(),
            idle: VecDeque::new(),
            deadlines: VecDeque::new(),
            escalation,
            backlog: 0,
            unacked: 0,
            tally: Tally::default(),
            overflowed: Vec::new(),
            internal_conns: 0,
            canary_user: None,
            drop_deliveries: false,
            runs: RunTracker::new(&cfg.enrichment),
            user_cap: cfg.max_users.div_ceil(cfg.shards.max(1)).max(1),
            history_cap: cfg.max_history_bytes.div_ceil(cfg.shards.max(1)),
            history_bytes: 0,
            history_events: 0,
            seq_floor: 0,
            deferred: Vec::new(),
            deferred_frame: None,
            draining: false,
            cfg,
        }
    }

    pub(crate) fn health_policy(&self) -> HealthConfig {
        self.cfg.health.clone()
    }

    /// Applies a fault injected by a test (see [`crate::health`]).
    fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::Panic => panic!("injected fault: shard worker panic"),
            Fault::Stall(d) => std::thread::sleep(d),
            Fault::DropDeliveries(on) => self.drop_deliveries = on,
        }
    }

    /// After a panic: every connection is closed with 1011 and unregistered; user state
    /// (seq, ack cursor, history) is kept so clients resume without loss.
    pub(crate) fn recover_after_panic(&mut self, now: u64) {
        for (_, c) in self.conns.iter() {
            // A panic inside a direct write must not leave the socket taken: the transport
            // would wait for it forever before writing its close.
            crate::sink::worker_abandon(&c.shared.writer);
            c.shared.close(close_code::INTERNAL_ERROR);
        }
        self.tally.disconnects += self.conns.len() as u64;
        self.tally.restart_closes += (self.conns.len() - self.internal_conns) as u64;
        self.conns.clear();
        // A panic between noting direct writes and making them: those keys are gone.
        self.deferred.clear();
        self.deferred_frame = None;
        self.channels.clear();
        self.overflowed.clear();
        self.backlog = 0;
        self.internal_conns = 0;
        // A panic may have struck between a history change and its accounting: recount.
        self.history_bytes = self.users.values().map(|u| u.history.bytes()).sum();
        self.history_events = self.users.values().map(|u| u.history.len()).sum();
        for state in self.users.values_mut() {
            if !state.conns.is_empty() {
                state.conns.clear();
                state.idle_since = Some(now);
                self.idle.push_back((state.user.clone(), now));
            }
        }
    }

    pub(crate) fn tick(&self) -> std::time::Duration {
        self.cfg.tick
    }

    /// The clock the worker reads for this shard ([`HubConfig::clock`]).
    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.cfg.clock)
    }

    /// Serves one command at the batch's time `now` (read only by commands that need it).
    pub(crate) fn handle(&mut self, cmd: Command<Shard>, counters: &ShardCounters, now: &mut Now) {
        match cmd {
            Command::Publish {
                user,
                event,
                priority,
                ts_ms,
                born_us,
                reply,
            } => {
                if self.drop_deliveries {
                    // The injected silent failure: accepted, answered, never delivered.
                    if let Some(tx) = reply {
                        let _ = tx.send(Receipt {
                            seq: None,
                            connections: 0,
                        });
                    }
                    return;
                }
                let receipt = self.publish_user(user, &event, priority, ts_ms, born_us, now);
                if let Some(tx) = reply {
                    let _ = tx.send(receipt);
                }
            }
            Command::Fanout {
                frame,
                channel,
                priority,
                coalesce_run,
                kind,
                born_us,
                reply,
            } => {
                let n = self.fanout(
                    &frame,
                    channel.as_ref(),
                    priority,
                    coalesce_run.as_ref(),
                    born_us,
                    now,
                );
                let k = usize::from(kind).min(KINDS - 1);
                self.tally.published_by_kind[k] += 1;
                self.tally.delivered_by_kind[k] += n as u64;
                if let Some(tx) = reply {
                    let _ = tx.send(n);
                }
                self.write_deferred();
            }
            Command::Connect {
                user,
                id,
                shared,
                mut options,
                reply,
            } => {
                let seed = options.seed.take();
                let now = now.ms();
                let out = self.connect(user, id, shared, &options, seed, now);
                // The caller gave up (its `Connecting` was dropped): nobody will ever hold the
                // `Connection` whose drop unregisters it, so unregister now.
                if let Err((key, _)) = reply.send(out) {
                    self.disconnect(key, id, counters, now);
                }
            }
            Command::Disconnect { key, id } => self.disconnect(key, id, counters, now.ms()),
            Command::Ack { user, seq } => self.ack(&user, seq),
            Command::Subscribe {
                key,
                id,
                channel,
                reply,
            } => {
                let _ = reply.send(self.subscribe(key, id, channel));
            }
            Command::Unsubscribe { key, id, channel } => self.unsubscribe(key, id, &channel),
            Command::Refill { key, id } => {
                if let Some(c) = self.conns.get_mut(key).filter(|c| c.id == id) {
                    let moved = refill(c);
                    self.backlog -= moved;
                    if !c.internal {
                        self.tally.handed += moved as u64;
                    }
                    if self.draining && c.ring.is_empty() {
                        // Everything is in the hand-off queue: the close is seen after it.
                        c.shared.close(close_code::GOING_AWAY);
                    }
                }
            }
            Command::AttachSink { key, id, sink } => {
                if let Some(c) = self.conns.get_mut(key).filter(|c| c.id == id) {
                    c.sink = Some(sink);
                }
            }
            Command::Inspect(f) => {
                // Answers reflect every earlier command, counters included.
                self.flush_counters(counters);
                f(self)
            }
            Command::Deliver {
                user,
                entry,
                coalesce_run,
                kind,
                born_us,
            } => self.deliver_sequenced(user, entry, coalesce_run, kind, born_us, now),
            Command::Fault(fault) => self.inject(fault),
            Command::Drain => self.begin_drain(),
            Command::Shutdown => {}
        }
    }

    fn publish_user(
        &mut self,
        user: UserId,
        event: &Event,
        priority: Priority,
        ts_ms: u64,
        born_us: u64,
        now: &mut Now,
    ) -> Receipt {
        self.tally.published_user += 1;
        self.tally.published_by_priority[priority as usize] += 1;
        let ack_deadline = self.cfg.ack_deadline.as_millis() as u64;
        // One compare while the table is below its bound.
        if self.users.len() >= self.user_cap && !self.users.contains_key(ukey(&user)) {
            self.make_room_for_user();
        }
        let state = user_state(
            &mut self.users,
            &mut self.idle,
            &self.cfg,
            Some(self.seq_floor),
            &user,
            ts_ms,
        );
        // Software pipelining of the misses (see `crate::prefetch`): everything this publish
        // will write is hinted now, in two stages, so the fetches overlap the enrichment and
        // the serialization instead of each stalling the publish in turn. Stage 1: the
        // connections' table slots (their keys are inline in `state`), the history entry
        // the push evicts, and the pooled buffer the frame is written into.
        for &key in &state.conns {
            self.conns.prefetch(key);
        }
        state.history.prefetch_front();
        self.frame_pool.prefetch_next(frame::payload_hint(
            event.kind.as_str(),
            event.run_id.as_deref(),
            event.data.as_bytes(),
            0,
        ));
        state.last_seq += 1;
        let seq = state.last_seq;
        // One compare: the seq stays below the next millisecond's base (see the module docs).
        // The wait (cold) re-reads the clock: `ts_ms` may be stale.
        if seq >= ts_ms.saturating_add(1).saturating_mul(1000)
            && self.cfg.clock.wait_until_ms(seq / 1000)
        {
            self.tally.seq_clock_waits += 1;
        }
        if state.conns.is_empty() {
            state.idle_since = Some(ts_ms);
        }
        // Enrichment: once per publish, before the one serialization.
        let meta = self.runs.observe(&user, &mut state.runs, event, ts_ms);
        // Stage 2, with the slots (hopefully) arrived: the lines a push writes, the shared
        // connection state and the hand-off slot, fetched while the frame is serialized.
        for &key in &state.conns {
            if let Some(c) = self.conns.get(key) {
                prefetch_write(Arc::as_ptr(&c.shared));
                prefetch_write(c.next_slot as *const u8);
            }
        }
        let (bytes_before, events_before) = (state.history.bytes(), state.history.len());
        state.history.expire_recycling(ts_ms, &mut self.frame_pool);
        let frame = frame::encode_event_pooled(
            &EventFields {
                kind: &event.kind,
                origin: Origin::User { seq },
                run_id: event.run_id.as_deref(),
                ts_ms,
                priority,
                data: event.data.as_bytes(),
                extra: meta,
            },
            &mut self.frame_pool,
        )
        .into_bytes();
        if state.history.push_recycling(
            HistoryEntry::new(seq, priority, ts_ms, frame.clone()),
            &mut self.frame_pool,
        ) {
            self.tally.history_merged += 1;
        }
        self.history_bytes = self.history_bytes - bytes_before + state.history.bytes();
        self.history_events = self.history_events - events_before + state.history.len();
        if priority == Priority::Critical {
            state.unacked_critical.push_back(seq);
            self.unacked += 1;
            // Tracked as far back as the user's own history reaches.
            if state.unacked_critical.len() > state.history.max_len().max(1) {
                state.unacked_critical.pop_front();
                self.unacked -= 1;
            }
            self.deadlines.push_back(Deadline {
                due_ms: ts_ms.saturating_add(ack_deadline),
                user: user.clone(),
                seq,
                run_id: event.run_id.clone(),
                kind: event.kind.clone(),
                published_ms: ts_ms,
            });
        }
        let coalesce = coalesce_run(event);
        let handed_before = self.tally.handed;
        // The key list is read in place: `deliver` borrows only the fields it writes.
        let delivered = deliver(
            &mut self.conns,
            &mut self.tally,
            &mut self.backlog,
            &mut self.overflowed,
            &state.conns,
            Parcel {
                frame: &frame,
                priority,
                coalesce: coalesce.as_ref(),
                born_us,
            },
            None,
        );
        if user.is_internal() {
            // The canary is not traffic: keep it out of the delivery counters.
            self.tally.published_user -= 1;
            self.tally.published_by_priority[priority as usize] -= 1;
            self.tally.delivered -= delivered as u64;
            // Nor in the queue depth: the canary's connection drains without counting.
            self.tally.handed = handed_before;
        } else {
            let k = event.kind.index();
            self.tally.published_by_kind[k] += 1;
            self.tally.delivered_by_kind[k] += delivered as u64;
        }
        self.close_overflowed(now);
        // One compare while the shard's histories are within their bound.
        if self.history_bytes > self.history_cap {
            self.shrink_history(&user);
        }
        Receipt {
            seq: Some(seq),
            connections: delivered,
        }
    }

    /// Writes the frame of the channel publish or broadcast just answered to the connections
    /// noted for a direct write (see [`crate::sink`]). The reply goes first so a publisher's
    /// receipt, and its `connections` count (each noted connection gets the frame, written or
    /// queued), never waits for thousands of socket writes. Called right after the reply,
    /// before any other command can queue to those connections; each entry carries the
    /// connection's id, so a key reused meanwhile is skipped. (A per-user publish writes at
    /// once: its receipt waits for one write per device, and a `pong` the client sends after
    /// the receipt then always follows the event.)
    fn write_deferred(&mut self) {
        let Some((frame, born_us)) = self.deferred_frame.take() else {
            return;
        };
        if self.deferred.is_empty() {
            return;
        }
        let mut wakes = Wakes::new();
        let mut direct = Direct::default();
        // The budget is wall time, read from the monotonic clock every few writes: a
        // performance bound, not shard logic, so it does not go through `crate::clock`.
        let budget_us = u64::try_from(self.cfg.direct_write_budget.as_micros()).unwrap_or(u64::MAX);
        let start = crate::health::state::mono_us();
        let mut spent = false;
        for (i, &(key, id)) in self.deferred.iter().enumerate() {
            let Some(c) = self.conns.get_mut(key).filter(|c| c.id == id) else {
                continue;
            };
            if !spent && i % 16 == 15 {
                spent = crate::health::state::mono_us().saturating_sub(start) >= budget_us;
            }
            if spent {
                hand_noted(c, &frame, born_us);
                self.tally.handed += 1;
                wakes.add(key, &self.conns);
                continue;
            }
            if write_noted(c, &frame, born_us) {
                self.tally.direct_writes += 1;
                direct.add(c);
            } else {
                self.tally.handed += 1;
                wakes.add(key, &self.conns);
            }
        }
        self.deferred.clear();
        wakes.flush(&self.conns);
        direct.finish(born_us);
    }

    fn close_overflowed(&mut self, now: &mut Now) {
        while let Some(key) = self.overflowed.pop() {
            self.force_close(key, now.ms());
        }
    }

    fn fanout(
        &mut self,
        frame: &Bytes,
        channel: Option<&ChannelName>,
        priority: Priority,
        coalesce: Option<&Arc<str>>,
        born_us: u64,
        now: &mut Now,
    ) -> usize {
        self.tally.published_by_priority[priority as usize] += 1;
        self.deferred_frame = Some((frame.clone(), born_us));
        let delivered = match channel {
            Some(ch) => {
                self.tally.published_channel += 1;
                let keys = self.channels.get(ch).map_or(&[][..], Vec::as_slice);
                deliver(
                    &mut self.conns,
                    &mut self.tally,
                    &mut self.backlog,
                    &mut self.overflowed,
                    keys,
                    Parcel {
                        frame,
                        priority,
                        coalesce,
                        born_us,
                    },
                    Some(&mut self.deferred),
                )
            }
            None => {
                self.tally.published_broadcast += 1;
                let mut delivered = 0;
                // Walk slots by index so connections ahead can be prefetched (see
                // `prefetch`): the loop is bound by cache misses. Both lines a push touches,
                // the connection's shared state and the hand-off slot, have addresses known
                // from the entry alone, so neither prefetch waits on the other.
                const AHEAD: usize = 8;
                let mut wakes = Wakes::new();
                let mut direct = Direct::default();
                for key in 0..self.conns.key_bound() {
                    if let Some(next) = self.conns.get(key + AHEAD) {
                        prefetch_write(Arc::as_ptr(&next.shared));
                        prefetch_write(next.next_slot as *const u8);
                    }
                    let Some(c) = self.conns.get_mut(key).filter(|c| !c.internal) else {
                        continue;
                    };
                    match push_frame(
                        key,
                        Some(&mut self.deferred),
                        c,
                        frame,
                        priority,
                        coalesce,
                        &mut self.tally,
                        &mut self.backlog,
                        born_us,
                    ) {
                        Push::Ok => {
                            delivered += 1;
                            wakes.add(key, &self.conns);
                        }
                        Push::Written => {
                            delivered += 1;
                            direct.add(c);
                        }
                        Push::Deferred => delivered += 1,
                        Push::Lost => {}
                        Push::Close => self.overflowed.push(key),
                    }
                }
                wakes.flush(&self.conns);
                direct.finish(born_us);
                delivered
            }
        };
        self.close_overflowed(now);
        delivered
    }
}

/// The coalescing key of an event: its run, for `agent_thinking` only.
pub(crate) fn coalesce_run(event: &Event) -> Option<Arc<str>> {
    match event.kind {
        EventKind::AgentThinking => event.run_id.clone(),
        _ => None,
    }
}

fn gap_frame(g: Gap) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_slice(b"{\"type\":\"gap\",\"from\":");
    frame::write_u64(&mut b, g.from);
    b.put_slice(b",\"to\":");
    frame::write_u64(&mut b, g.to);
    b.put_u8(b'}');
    Frame::text(&b).into_bytes()
}

#[cfg(test)]
mod tests;
