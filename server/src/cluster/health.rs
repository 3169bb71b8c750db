//! The Redis link's state as the engine's health monitor reads it: the `broker` component
//! (`kind: redis`). Written by the link supervisor, read once per health interval.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentcast_engine::{BrokerHealth, HealthState};

/// Whether the node can reach Redis now. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct LinkHealth {
    state: Mutex<State>,
    failed_after: Duration,
}

#[derive(Debug)]
struct State {
    up: bool,
    /// Since when the link is up, or down.
    since: Instant,
    /// Why it is down (the last error).
    why: String,
}

impl LinkHealth {
    pub(crate) fn new(failed_after: Duration) -> LinkHealth {
        LinkHealth {
            state: Mutex::new(State {
                up: false,
                since: Instant::now(),
                why: "connecting to redis".to_owned(),
            }),
            failed_after,
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.lock().up
    }

    /// How long the link has been down, if it is.
    pub(crate) fn down_for(&self) -> Option<(Duration, String)> {
        let s = self.lock();
        (!s.up).then(|| (s.since.elapsed(), s.why.clone()))
    }

    pub(crate) fn set_up(&self) {
        let mut s = self.lock();
        if !s.up {
            s.up = true;
            s.since = Instant::now();
        }
    }

    /// Down because of `why`; the first failure starts the clock.
    pub(crate) fn set_down(&self, why: impl Into<String>) {
        let mut s = self.lock();
        if s.up {
            s.up = false;
            s.since = Instant::now();
        }
        s.why = why.into();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BrokerHealth for LinkHealth {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn check(&self) -> (HealthState, String) {
        let s = self.lock();
        if s.up {
            return (HealthState::Healthy, "redis: connected".to_owned());
        }
        let ms = s.since.elapsed().as_millis();
        let state = if s.since.elapsed() >= self.failed_after {
            HealthState::Failed
        } else {
            HealthState::Degraded
        };
        (state, format!("redis unreachable for {ms} ms: {}", s.why))
    }
}
