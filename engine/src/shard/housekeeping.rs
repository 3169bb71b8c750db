//! A shard's periodic work (escalation of overdue critical events, idle-user eviction, run
//! expiry) and its graceful-shutdown steps (see the `worker` docs, # Close).

use crate::conn::shared::close_code;
use crate::escalation::UnackedCritical;

use super::{Shard, ukey};

impl Shard {
    /// Escalates critical events overdue at `now` and evicts users idle for their TTL.
    pub(crate) fn housekeeping(&mut self, now: u64) {
        while self.deadlines.front().is_some_and(|d| d.due_ms <= now) {
            let Some(d) = self.deadlines.pop_front() else {
                break;
            };
            let Some(state) = self.users.get(ukey(&d.user)) else {
                continue;
            };
            if state.ack >= d.seq {
                continue;
            }
            if !state.ever_connected && !self.cfg.escalate_never_connected {
                self.tally.escalations_skipped += 1;
                continue;
            }
            self.tally.escalated += 1;
            let e = UnackedCritical {
                user: d.user,
                seq: d.seq,
                run_id: d.run_id,
                kind: d.kind,
                published_ms: d.published_ms,
                connections: state.conns.len(),
                ever_connected: state.ever_connected,
            };
            if !self.escalation.send(e) {
                self.tally.escalations_dropped += 1;
            }
        }
        let ttl = self.cfg.user_ttl.as_millis() as u64;
        // Each entry is looked at most once per run: re-queued entries go to the back.
        for _ in 0..self.idle.len() {
            if self
                .idle
                .front()
                .is_none_or(|(_, t)| now.saturating_sub(*t) < ttl)
            {
                break;
            }
            let Some((user, _)) = self.idle.pop_front() else {
                break;
            };
            let Some(state) = self.users.get_mut(ukey(&user)) else {
                continue;
            };
            let Some(since) = state.idle_since else {
                continue; // connected again; a new entry is queued when it leaves
            };
            if now.saturating_sub(since) < ttl {
                self.idle.push_back((user, since));
                continue;
            }
            let (bytes_before, events_before) = (state.history.bytes(), state.history.len());
            state.history.expire(now);
            self.history_bytes = self.history_bytes - bytes_before + state.history.bytes();
            self.history_events = self.history_events - events_before + state.history.len();
            if self.cfg.retain_history && !state.history.is_empty() {
                self.idle.push_back((user, now));
                continue;
            }
            self.evict_user(&user);
        }
        self.runs.expire(now, &mut self.users);
        // Deadlines of evicted users are dropped lazily above; keep the queue bounded by
        // dropping those whose user is gone when it grows past the live count.
        if self.deadlines.len() > 4 * self.users.len() + 1024 {
            let users = &self.users;
            self.deadlines
                .retain(|d| users.get(ukey(&d.user)).is_some_and(|s| s.ack < d.seq));
        }
    }

    /// Starts a graceful shutdown: a connection whose ring is empty is asked to close with
    /// 1001 now (its transport writes the hand-off queue first); the others when a refill
    /// empties their ring (see `Command::Refill`). Idempotent.
    pub(crate) fn begin_drain(&mut self) {
        self.draining = true;
        for (_, c) in self.conns.iter() {
            if c.ring.is_empty() {
                c.shared.close(close_code::GOING_AWAY);
            }
        }
    }

    /// Whether [`Shard::begin_drain`] was called.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining
    }

    /// Asks every connection to close with `code` (hub stop). Frames still in a ring are
    /// discarded with the shard: they are counted as unwritten. The hand-off queue stays with
    /// the transport, which writes it before the close.
    pub(crate) fn close_all(&mut self, code: u16) {
        for (_, c) in self.conns.iter() {
            if !c.internal {
                self.tally.shutdown_unwritten += c.ring.len() as u64;
            }
            c.shared.close(code);
        }
    }
}
