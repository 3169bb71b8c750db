//! The shard's user table: keys held inline, each user's state (connections, seq, ack
//! cursor, history, runs), and how a new state starts (its seq base; see the `shard` module
//! docs for the seq clock, whose wait is [`Clock::wait_until_ms`](crate::clock::Clock)).

use std::collections::{HashMap, VecDeque};

use ahash::RandomState;
use smallvec::SmallVec;

use crate::config::HubConfig;
use crate::event::UserId;
use crate::history::HistoryRing;
use crate::runs::{RunHost, UserRuns};

use super::Shard;

/// Bytes of a user id held inline in [`UserKey`] (which is then 40 bytes, as UUIDs and
/// the ids of common auth providers fit).
const INLINE_KEY: usize = 38;

/// The user table's key: the id's bytes, inline up to [`INLINE_KEY`] bytes. A lookup then
/// compares the id inside the table's own bucket; keyed by [`UserId`], it followed the id's
/// pointer to its bytes, a cache miss measured at 9% of a shard's time under per-user load.
/// Longer ids keep the pointer. Looked up by `&[u8]` (see [`ukey`]).
#[derive(Clone)]
pub(super) enum UserKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Long(UserId),
}

impl UserKey {
    pub(super) fn of(user: &UserId) -> UserKey {
        let b = user.as_str().as_bytes();
        if b.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..b.len()].copy_from_slice(b);
            UserKey::Inline {
                len: b.len() as u8,
                bytes,
            }
        } else {
            UserKey::Long(user.clone())
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            UserKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            UserKey::Long(u) => u.as_str().as_bytes(),
        }
    }
}

impl PartialEq for UserKey {
    fn eq(&self, other: &UserKey) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for UserKey {}

/// Hashes as the id's bytes, like the `&[u8]` lookups borrow it.
impl std::hash::Hash for UserKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl std::borrow::Borrow<[u8]> for UserKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// How the user table is looked up: by the id's bytes.
pub(super) fn ukey(user: &UserId) -> &[u8] {
    user.as_str().as_bytes()
}

pub(super) type UserTable = HashMap<UserKey, UserState, RandomState>;

/// One user's state on its home shard.
pub(super) struct UserState {
    /// The user (the table's key is a copy of its bytes).
    pub(super) user: UserId,
    /// Keys of the user's connections in `Shard::conns`. Up to two are held inline, in the
    /// hash table's own bucket: a publish reads them without another cache miss.
    pub(super) conns: SmallVec<[usize; 2]>,
    pub(super) last_seq: u64,
    pub(super) ack: u64,
    pub(super) history: HistoryRing,
    /// Seqs of critical events not yet acknowledged, ascending.
    pub(super) unacked_critical: VecDeque<u64>,
    /// Last time the user had activity while without connections (ms), for TTL eviction.
    pub(super) idle_since: Option<u64>,
    /// The user's tracked runs (see [`crate::runs`]); evicted with the user.
    pub(super) runs: UserRuns,
    /// Whether this state ever had a connection (set at connect; for the escalation policy
    /// [`HubConfig::escalate_never_connected`]).
    pub(super) ever_connected: bool,
}

impl RunHost for UserTable {
    fn runs_of(&mut self, user: &UserId) -> Option<&mut UserRuns> {
        self.get_mut(ukey(user)).map(|s| &mut s.runs)
    }
}

/// The state of `user`, created (and queued as idle) if absent.
///
/// `seq_floor` is `None` in cluster mode (`sequenced`): the broker assigns seqs, and a new
/// state starts at 0, "not known yet", until the first event or seed says where the user is.
pub(super) fn user_state<'a>(
    users: &'a mut UserTable,
    idle: &mut VecDeque<(UserId, u64)>,
    cfg: &HubConfig,
    seq_floor: Option<u64>,
    user: &UserId,
    now: u64,
) -> &'a mut UserState {
    users.entry(UserKey::of(user)).or_insert_with(|| {
        // Seqs of a new incarnation start above any seq an earlier (evicted, or previous
        // process's) incarnation issued: see the module docs.
        let base = seq_floor.map_or(0, |floor| now.saturating_mul(1000).max(floor));
        idle.push_back((user.clone(), now));
        UserState {
            user: user.clone(),
            conns: SmallVec::new(),
            last_seq: base,
            ack: base,
            history: HistoryRing::new(
                cfg.history_len,
                cfg.history_max_age.as_millis() as u64,
                base,
            )
            .with_max_bytes(cfg.max_history_bytes_per_user),
            unacked_critical: VecDeque::new(),
            idle_since: Some(now),
            runs: UserRuns::default(),
            ever_connected: false,
        }
    })
}

/// Eviction: whole user states, least recently active first (see the `shard` module docs,
/// # Bounds and # Idle users).
impl Shard {
    /// Evicts the least recently active user without a connection, other than `except`
    /// (see the module docs). Returns false when there is none. Amortized O(1): an entry is
    /// re-queued only for activity since it was queued, and stale entries are dropped.
    pub(super) fn evict_least_recent_idle(&mut self, except: Option<&UserId>) -> bool {
        for _ in 0..self.idle.len() {
            let Some((user, queued)) = self.idle.pop_front() else {
                break;
            };
            let Some(state) = self.users.get(ukey(&user)) else {
                continue; // evicted already
            };
            let Some(since) = state.idle_since else {
                continue; // connected; a new entry is queued when it leaves
            };
            if except == Some(&user) || since > queued {
                self.idle.push_back((user, since));
                continue;
            }
            self.evict_user(&user);
            self.tally.users_evicted_over_limit += 1;
            return true;
        }
        false
    }

    /// A user is about to be created with the table at its bound: evict one if any is idle
    /// (if every user is connected, none is: connections have their own bound).
    #[cold]
    pub(super) fn make_room_for_user(&mut self) {
        self.evict_least_recent_idle(None);
    }

    /// The shard's histories are over their byte bound after a publish to `user`: evict idle
    /// users, then `user`'s oldest events, until they fit.
    #[cold]
    pub(super) fn shrink_history(&mut self, user: &UserId) {
        while self.history_bytes > self.history_cap && self.evict_least_recent_idle(Some(user)) {}
        let Some(state) = self.users.get_mut(ukey(user)) else {
            return;
        };
        while self.history_bytes > self.history_cap {
            let before = state.history.bytes();
            if !state.history.evict_oldest() {
                break;
            }
            self.history_bytes -= before - state.history.bytes();
            self.history_events -= 1;
        }
    }

    /// Removes `user`'s whole state (TTL or bound eviction), keeping every total exact.
    pub(super) fn evict_user(&mut self, user: &UserId) {
        if let Some(gone) = self.users.remove(ukey(user)) {
            self.unacked -= gone.unacked_critical.len();
            self.history_bytes -= gone.history.bytes();
            self.history_events -= gone.history.len();
            self.seq_floor = self.seq_floor.max(gone.last_seq);
            self.runs.forget_user(&gone.runs);
        }
        self.tally.users_evicted += 1;
    }
}
