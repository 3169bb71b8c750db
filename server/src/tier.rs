//! Tiers: the `tier` claim of a client JWT selects per-user limits.
//!
//! | tier | connections per user | subscriptions per connection | history length |
//! |---|---|---|---|
//! | `free` (default) | 5 | 16 | 100 |
//! | `early` | 10 | 32 | 500 |
//! | `mid` | 25 | 64 | 1,000 |
//! | `enterprise` | 100 | 256 | 5,000 |
//!
//! Each can be changed in the `[tiers.<name>]` tables of the config file.
//!
//! # History length
//!
//! A user's history holds its tier's `history_len` from its first connection on, applied when
//! each event is stored, and keeps it while the user is offline (the tier of the last
//! connection wins). A user whose tier is unknown (never connected to this node, or forgotten
//! after `user_ttl_ms`) holds the top-level `history_len` setting, by default the free tier's.
//!
//! # Connections per user
//!
//! When a user already holds `connections_per_user` connections, a new one is **refused with
//! HTTP 429 before the upgrade** (`{"error": "connection limit of N for tier T reached"}`).
//! Refusing (rather than closing the oldest) never disconnects a device the user is looking
//! at because another device, or a reconnect loop, opened one more; the client sees a clear
//! status it can surface. The count is per node.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use agentcast_engine::UserId;
use serde::Deserialize;

/// A service tier, from the JWT `tier` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tier {
    /// The default.
    #[default]
    Free,
    /// Early access.
    Early,
    /// Mid-size customers.
    Mid,
    /// Enterprise customers.
    Enterprise,
}

impl Tier {
    /// Every tier, in index order (`Tier as usize`).
    pub const ALL: [Tier; 4] = [Tier::Free, Tier::Early, Tier::Mid, Tier::Enterprise];

    /// Parses the claim value (`free|early|mid|enterprise`).
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "free" => Some(Tier::Free),
            "early" => Some(Tier::Early),
            "mid" => Some(Tier::Mid),
            "enterprise" => Some(Tier::Enterprise),
            _ => None,
        }
    }

    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Early => "early",
            Tier::Mid => "mid",
            Tier::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limits of one tier.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct TierLimits {
    /// Connections one user may hold on this node.
    pub connections_per_user: usize,
    /// Channel subscriptions one connection may hold.
    pub subscriptions_per_connection: usize,
    /// Events kept in the user's history for offline delivery and resume.
    pub history_len: usize,
}

impl TierLimits {
    /// Limits with the given values.
    pub const fn new(connections: usize, subscriptions: usize, history: usize) -> TierLimits {
        TierLimits {
            connections_per_user: connections,
            subscriptions_per_connection: subscriptions,
            history_len: history,
        }
    }
}

/// The limits of every tier. See the [module docs](self) for the defaults. In the config
/// file, a `[tiers.<name>]` table may set any subset of the fields; the others keep that
/// tier's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawTiers")]
#[non_exhaustive]
pub struct Tiers {
    /// `free`.
    pub free: TierLimits,
    /// `early`.
    pub early: TierLimits,
    /// `mid`.
    pub mid: TierLimits,
    /// `enterprise`.
    pub enterprise: TierLimits,
}

impl Default for Tiers {
    fn default() -> Tiers {
        Tiers {
            free: TierLimits::new(5, 16, 100),
            early: TierLimits::new(10, 32, 500),
            mid: TierLimits::new(25, 64, 1000),
            enterprise: TierLimits::new(100, 256, 5000),
        }
    }
}

/// A `[tiers.<name>]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTierLimits {
    connections_per_user: Option<usize>,
    subscriptions_per_connection: Option<usize>,
    history_len: Option<usize>,
}

/// The `[tiers]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTiers {
    free: RawTierLimits,
    early: RawTierLimits,
    mid: RawTierLimits,
    enterprise: RawTierLimits,
}

impl RawTierLimits {
    fn over(&self, d: TierLimits) -> TierLimits {
        TierLimits {
            connections_per_user: self.connections_per_user.unwrap_or(d.connections_per_user),
            subscriptions_per_connection: self
                .subscriptions_per_connection
                .unwrap_or(d.subscriptions_per_connection),
            history_len: self.history_len.unwrap_or(d.history_len),
        }
    }
}

impl From<RawTiers> for Tiers {
    fn from(raw: RawTiers) -> Tiers {
        let d = Tiers::default();
        Tiers {
            free: raw.free.over(d.free),
            early: raw.early.over(d.early),
            mid: raw.mid.over(d.mid),
            enterprise: raw.enterprise.over(d.enterprise),
        }
    }
}

impl Tiers {
    /// The limits of `tier`.
    pub fn get(&self, tier: Tier) -> &TierLimits {
        match tier {
            Tier::Free => &self.free,
            Tier::Early => &self.early,
            Tier::Mid => &self.mid,
            Tier::Enterprise => &self.enterprise,
        }
    }
}

/// Open connections per user on this node, for the per-tier limit.
///
/// A mutex-guarded map touched twice per connection (open and close), never per event. An
/// entry is removed when its count returns to zero, so memory follows the connected users.
#[derive(Debug, Default)]
pub struct UserConnections {
    counts: Mutex<HashMap<UserId, usize>>,
}

/// A held slot of [`UserConnections`]; dropping it frees the slot.
#[derive(Debug)]
pub struct UserSlot {
    owner: Arc<UserConnections>,
    user: UserId,
}

impl UserConnections {
    /// Takes a slot for `user` unless it already holds `limit`.
    pub fn try_acquire(self: &Arc<Self>, user: &UserId, limit: usize) -> Option<UserSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(user.clone()).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                counts.remove(user);
            }
            return None;
        }
        *n += 1;
        Some(UserSlot {
            owner: Arc::clone(self),
            user: user.clone(),
        })
    }

    /// Connections `user` holds.
    pub fn count(&self, user: &UserId) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(user).copied().unwrap_or(0)
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_and_freed_on_drop() {
        let reg = Arc::new(UserConnections::default());
        let u = UserId::new("u").unwrap();
        let a = reg.try_acquire(&u, 2).unwrap();
        let _b = reg.try_acquire(&u, 2).unwrap();
        assert!(reg.try_acquire(&u, 2).is_none());
        drop(a);
        assert!(reg.try_acquire(&u, 2).is_some());
        assert!(reg.try_acquire(&u, 0).is_none());
    }
}
