//! The shard in cluster mode: events arrive already sequenced by the broker (see
//! [`crate::broker`]), and the user's history is a cache of the broker's.
//!
//! A user's state starts at seq 0, "not known": the first event delivered or the first seed
//! says where the user is. After that, seqs must go up by one: a seq at or below the last
//! one is a duplicate (the same event read from the broker and received live) and dropped;
//! a seq further up means events were lost on the way, and the user's connections get a
//! `gap` frame before it, as a resume would (a state without connections only restarts its
//! cache: the node was not subscribed meanwhile, and the next connection's seed fills it).
//! An entry of merged deltas (a broker that stores them merged, read back) covers a range of
//! seqs and counts from its first: the part at or below the last seq is a duplicate and cut
//! off, the rest is delivered as one delta with `seq_from`.

use std::sync::Arc;

use crate::broker::seed::Seed;
use crate::clock::Now;
use crate::event::{Priority, UserId};
use crate::history::{Gap, HistoryEntry};
use crate::stats::KINDS;

use super::{Parcel, Shard, UserState, deliver, gap_frame, ukey, user_state};

impl Shard {
    /// [`Command::Deliver`](crate::command::Command::Deliver): see the [module docs](self).
    pub(super) fn deliver_sequenced(
        &mut self,
        user: UserId,
        entry: HistoryEntry,
        coalesce: Option<Arc<str>>,
        kind: u8,
        born_us: u64,
        batch: &mut Now,
    ) {
        let now = batch.ms();
        if self.users.len() >= self.user_cap && !self.users.contains_key(ukey(&user)) {
            self.make_room_for_user();
        }
        let state = user_state(&mut self.users, &mut self.idle, &self.cfg, None, &user, now);
        let known = state.last_seq != 0;
        // Merged deltas (a catch-up read of a broker that stores them merged) cover a range
        // of seqs: what of it is at or below the last seq is a duplicate, the rest is new.
        let entry = match known && entry.seq_from() <= state.last_seq {
            false => entry,
            true => match entry.cut_after(state.last_seq) {
                Some(rest) => rest,
                None => {
                    self.tally.sequenced_duplicates += 1;
                    return;
                }
            },
        };
        let first = entry.seq_from();
        let jump = known && first > state.last_seq + 1;
        // Without a connection the cache is merely stale (the node was not subscribed): the
        // next connection's seed fills it. With one, events were lost on the way: say so.
        let gap = (jump && !state.conns.is_empty()).then(|| Gap {
            from: state.last_seq + 1,
            to: first - 1,
        });
        let (bytes_before, events_before) = (state.history.bytes(), state.history.len());
        if !known || jump {
            // The held seqs stay one contiguous run: a resume from before the hole sees it.
            state.history = state.history.emptied(first - 1);
        }
        state.last_seq = entry.seq;
        if state.conns.is_empty() {
            state.idle_since = Some(now);
        }
        state.history.expire(now);
        // A merged entry has no frame of its own: it is encoded now, whole (O(its text)).
        let (frame, priority) = (entry.replay_frame(0), entry.priority());
        if state.history.push(entry) {
            self.tally.history_merged += 1;
        }
        self.history_bytes = self.history_bytes - bytes_before + state.history.bytes();
        self.history_events = self.history_events - events_before + state.history.len();
        if let Some(g) = gap {
            self.tally.gaps += 1;
            self.tally.sequenced_holes += 1;
            let frame = gap_frame(g);
            deliver(
                &mut self.conns,
                &mut self.tally,
                &mut self.backlog,
                &mut self.overflowed,
                &state.conns,
                Parcel {
                    frame: &frame,
                    priority: Priority::Critical,
                    coalesce: None,
                    born_us,
                },
                None,
            );
        }
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
        self.tally.published_user += 1;
        self.tally.published_by_priority[priority as usize] += 1;
        let k = usize::from(kind).min(KINDS - 1);
        self.tally.published_by_kind[k] += 1;
        self.tally.delivered_by_kind[k] += delivered as u64;
        self.close_overflowed(batch);
        if self.history_bytes > self.history_cap {
            self.shrink_history(&user);
        }
    }
}

/// Replaces `state`'s history cache with what the broker read, keeping the events cached
/// since (above `seed.last_seq`): the read and the live subscription overlap, so the union
/// by seq misses nothing and holds nothing twice.
pub(super) fn apply_seed(state: &mut UserState, seed: Seed) {
    // A merged entry straddling `seed.last_seq` keeps only its part above it.
    let later: Vec<HistoryEntry> = state
        .history
        .iter()
        .filter(|e| e.seq > seed.last_seq)
        .cloned()
        .filter_map(|e| e.cut_after(seed.last_seq))
        .collect();
    // The first held seq is the first entry's first (a merged entry covers several).
    let base = seed
        .entries
        .first()
        .map_or(seed.last_seq, |e| e.seq_from().saturating_sub(1));
    let mut ring = state.history.emptied(base);
    let mut top = base;
    for e in seed.entries.into_iter().chain(later) {
        if e.seq > top {
            top = e.seq;
            ring.push(e);
        }
    }
    state.history = ring;
    state.last_seq = state.last_seq.max(seed.last_seq).max(top);
    state.ack = state.ack.max(seed.ack);
}
