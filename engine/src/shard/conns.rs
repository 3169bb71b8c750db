//! Connections on their shard: registration with replay (and the merge of a cluster-mode
//! seed), unregistration, forced closes, channel subscriptions and acks.

use std::sync::Arc;

use crate::broker::seed::Seed;
use crate::conn::shared::{ConnId, ConnShared, ConnectOptions, Resume, Welcome, close_code};
use crate::error::SubscribeError;
use crate::event::{ChannelName, Priority, UserId};
use crate::ring::{PriorityRing, Queued};
use crate::stats::ShardCounters;

use super::{ConnEntry, Parcel, Shard, deliver, gap_frame, refill, sequenced, ukey, user_state};

impl Shard {
    pub(super) fn force_close(&mut self, key: usize, now: u64) {
        self.tally.forced_closes += 1;
        if let Some(c) = self.conns.get(key) {
            c.shared.close(close_code::TRY_AGAIN_LATER);
        }
        // The entry is removed now so no more frames are queued; the transport's handle
        // drops later and its Disconnect finds nothing.
        self.remove(key, now);
    }

    pub(super) fn connect(
        &mut self,
        user: UserId,
        id: ConnId,
        shared: Arc<ConnShared>,
        opts: &ConnectOptions,
        seed: Option<Box<Seed>>,
        now: u64,
    ) -> (usize, Welcome) {
        let seed_given = seed.is_some();
        self.tally.connects += 1;
        let key = self.conns.insert(ConnEntry {
            id,
            user: user.clone(),
            next_slot: shared.handoff.next_slot(),
            shared,
            ring: PriorityRing::new(self.cfg.ring_capacity),
            channels: Vec::new(),
            max_subscriptions: opts.max_subscriptions,
            internal: opts.internal,
            sink: None,
        });
        if opts.internal {
            self.internal_conns += 1;
            self.canary_user = Some(user.clone());
        }
        if self.users.len() >= self.user_cap && !self.users.contains_key(ukey(&user)) {
            self.make_room_for_user();
        }
        let state = user_state(
            &mut self.users,
            &mut self.idle,
            &self.cfg,
            seed.is_none().then_some(self.seq_floor),
            &user,
            now,
        );
        // Registered among the user's connections only after the seed's catch-up below, which
        // goes to the connections already here.
        let known_before = state.last_seq;
        state.idle_since = None;
        let (bytes_before, events_before) = (state.history.bytes(), state.history.len());
        state.ever_connected = true;
        if let Some(len) = opts.history_len {
            state.history.set_max_len(len);
        }
        let after = match opts.resume {
            Resume::FromAck => state.ack,
            Resume::After(seq) => seq,
        };
        if let Some(seed) = seed {
            sequenced::apply_seed(state, *seed);
        }
        // The broker's read travels apart from the live subscription and may hold events
        // this shard has not received live yet. Their live copies are duplicates now (the
        // user's last seq covers them), so the connections already here get them from the
        // seed, in seq order, after a `gap` if the read starts past what they had.
        if seed_given && known_before != 0 && state.last_seq > known_before {
            let (gap, events) = state.history.after(known_before);
            self.tally.gaps += u64::from(gap.is_some());
            let frames: Vec<_> = gap
                .map(|g| (gap_frame(g), Priority::Critical))
                .into_iter()
                .chain(events.map(|e| (e.replay_frame(known_before), e.priority())))
                .collect();
            for (frame, priority) in &frames {
                deliver(
                    &mut self.conns,
                    &mut self.tally,
                    &mut self.backlog,
                    &mut self.overflowed,
                    &state.conns,
                    Parcel {
                        frame,
                        priority: *priority,
                        coalesce: None,
                        born_us: now.saturating_mul(1_000),
                    },
                    None,
                );
            }
        }
        state.conns.push(key);
        state.history.expire(now);
        self.history_bytes = self.history_bytes - bytes_before + state.history.bytes();
        self.history_events = self.history_events - events_before + state.history.len();
        let after = match (opts.resume, seed_given) {
            // Seeded: the seed's ack cursor is the cluster-wide one.
            (Resume::FromAck, true) => state.ack,
            _ => after,
        };
        // A join in the middle of a run starts at the run's start (see the option).
        let after = match opts.resume {
            Resume::FromAck if opts.rewind_to_open_run => state
                .history
                .open_run_start(after)
                .map_or(after, |start| start.saturating_sub(1)),
            _ => after,
        };
        let (gap, events) = state.history.after(after);
        let c = &mut self.conns[key];
        if let Some(g) = gap {
            self.tally.gaps += 1;
            c.ring
                .push_unbounded(Queued::new(gap_frame(g), Priority::Critical));
        }
        // Critical first, then the rest, each in seq order; or all in seq order when asked.
        let mut replayed = 0;
        let in_order = opts.replay_in_seq_order;
        for pass in [true, false] {
            for e in events.clone().filter(|e| {
                if in_order {
                    pass
                } else {
                    (e.priority() == Priority::Critical) == pass
                }
            }) {
                c.ring
                    .push_unbounded(Queued::new(e.replay_frame(after), e.priority()));
                replayed += 1;
            }
        }
        self.tally.replayed += replayed as u64;
        self.backlog += c.ring.len();
        let moved = refill(c);
        self.backlog -= moved;
        self.tally.handed += moved as u64;
        let welcome = Welcome {
            conn_id: id,
            last_seq: state.last_seq,
            replayed,
            gap,
            user_connections: state.conns.len(),
        };
        // A connection whose ring the seed's catch-up overflowed is closed, as a live
        // delivery would close it.
        while let Some(k) = self.overflowed.pop() {
            self.force_close(k, now);
        }
        (key, welcome)
    }

    pub(super) fn disconnect(
        &mut self,
        key: usize,
        id: ConnId,
        counters: &ShardCounters,
        now: u64,
    ) {
        if self.conns.get(key).is_some_and(|c| c.id == id) {
            let shared = Arc::clone(&self.conns[key].shared);
            let internal = self.conns[key].internal;
            if self.draining && !internal {
                // The transport gave up during shutdown (grace over, or the client went
                // away): what it leaves in the ring and the hand-off queue is never written.
                let left = self.conns[key].ring.len() + shared.handoff.len();
                self.tally.shutdown_unwritten += left as u64;
            }
            self.remove(key, now);
            // The transport is gone (its handle sent this command after its last drain): what
            // it left is discarded with the last reference; count it to keep in-flight
            // accounting exact.
            let left = shared.handoff.len() as u64;
            if !internal {
                counters
                    .drained
                    .fetch_add(left, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Unregisters connection `key` from every index.
    pub(super) fn remove(&mut self, key: usize, now: u64) {
        let Some(c) = self.conns.try_remove(key) else {
            return;
        };
        self.tally.disconnects += 1;
        self.internal_conns -= usize::from(c.internal);
        self.backlog -= c.ring.len();
        for ch in &c.channels {
            self.remove_from_channel(ch, key);
        }
        if let Some(state) = self.users.get_mut(ukey(&c.user)) {
            state.conns.retain(|k| *k != key);
            if state.conns.is_empty() {
                state.idle_since = Some(now);
                self.idle.push_back((c.user.clone(), now));
            }
        }
    }

    pub(super) fn remove_from_channel(&mut self, ch: &ChannelName, key: usize) {
        if let Some(list) = self.channels.get_mut(ch) {
            if let Some(i) = list.iter().position(|&k| k == key) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                self.channels.remove(ch);
            }
        }
    }

    pub(super) fn ack(&mut self, user: &UserId, seq: u64) {
        self.tally.acks += u64::from(!user.is_internal());
        if let Some(state) = self.users.get_mut(ukey(user)) {
            let seq = seq.min(state.last_seq);
            if seq > state.ack {
                state.ack = seq;
            }
            while state
                .unacked_critical
                .front()
                .is_some_and(|&s| s <= state.ack)
            {
                state.unacked_critical.pop_front();
                self.unacked -= 1;
            }
        }
    }

    pub(super) fn subscribe(
        &mut self,
        key: usize,
        id: ConnId,
        channel: ChannelName,
    ) -> Result<(), SubscribeError> {
        let c = self
            .conns
            .get_mut(key)
            .filter(|c| c.id == id)
            .ok_or(SubscribeError::Closed)?;
        if c.channels.contains(&channel) {
            return Ok(());
        }
        if c.channels.len() >= c.max_subscriptions {
            return Err(SubscribeError::Limit {
                max: c.max_subscriptions,
            });
        }
        c.channels.push(channel.clone());
        self.channels.entry(channel).or_default().push(key);
        Ok(())
    }

    pub(super) fn unsubscribe(&mut self, key: usize, id: ConnId, channel: &ChannelName) {
        let Some(c) = self.conns.get_mut(key).filter(|c| c.id == id) else {
            return;
        };
        let Some(i) = c.channels.iter().position(|ch| ch == channel) else {
            return;
        };
        c.channels.swap_remove(i);
        self.remove_from_channel(channel, key);
    }
}
