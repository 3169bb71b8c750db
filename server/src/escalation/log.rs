//! The escalation log, aggregated: at most one line per interval, however many critical
//! events go unacknowledged.
//!
//! An escalation is an operator signal, not a server error, so every line is at warn level
//! (target `agentcast::escalation`). After a quiet interval the first escalation is logged at
//! once, in full (user, run, seq, type). Escalations that follow within the interval are only
//! counted, with the first few users named; when the interval has passed, one summary line
//! says how many there were, over how long, and what to do (the next escalation writes it,
//! or the periodic [`EscalationLog::flush`] when none comes). Every escalation is still
//! counted one by one (`agentcast_escalations_total`) and posted to the webhook when one is
//! configured: only the log is aggregated.
//!
//! Time is a parameter (`now`), so the aggregation is tested without sleeping.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use agentcast_server::escalation::EscalationLog;
//!
//! let log = EscalationLog::new(Duration::from_secs(1));
//! let t0 = Instant::now();
//! assert!(log.flush(t0).is_none()); // nothing pending, nothing to write
//! # let _ = log;
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentcast_engine::UnackedCritical;

/// Users named in a summary line; the others are "and others".
pub const USERS_NAMED: usize = 5;

/// The aggregator. See the [module docs](self).
///
/// Called by the engine's escalation thread ([`EscalationLog::record`]) and by a periodic
/// task ([`EscalationLog::flush`]); the `Mutex` is uncontended in practice and on no
/// delivery path.
#[derive(Debug)]
pub struct EscalationLog {
    interval: Duration,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// When the last line was written.
    last_line: Option<Instant>,
    /// Escalations counted since the last line, not yet written.
    pending: u64,
    /// The first distinct users among them (at most [`USERS_NAMED`]).
    users: Vec<String>,
    /// Whether other users came after `users` was full.
    more_users: bool,
}

impl Window {
    fn note(&mut self, user: &str) {
        self.pending += 1;
        if self.users.iter().any(|u| u == user) {
            return;
        }
        if self.users.len() < USERS_NAMED {
            self.users.push(user.to_owned());
        } else {
            self.more_users = true;
        }
    }

    fn summary(&mut self, now: Instant) -> EscalationLine {
        let over = self
            .last_line
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_line = Some(now);
        EscalationLine::Summary {
            events: std::mem::take(&mut self.pending),
            over,
            users: std::mem::take(&mut self.users),
            more_users: std::mem::take(&mut self.more_users),
        }
    }
}

/// One line to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscalationLine {
    /// The first escalation after a quiet interval, in full.
    One {
        /// The user.
        user: String,
        /// The event's run (empty when none).
        run_id: String,
        /// The event's seq.
        seq: u64,
        /// The event's type.
        event_type: String,
        /// The user's connections when the deadline passed.
        connections: usize,
        /// Whether the user's state ever had a connection.
        ever_connected: bool,
    },
    /// Escalations counted since the last line.
    Summary {
        /// How many.
        events: u64,
        /// Since the last line.
        over: Duration,
        /// The first few distinct users.
        users: Vec<String>,
        /// Whether more users than those were escalated.
        more_users: bool,
    },
}

impl EscalationLog {
    /// At most one line per `interval` (at least 1 ms).
    pub fn new(interval: Duration) -> EscalationLog {
        EscalationLog {
            interval: interval.max(Duration::from_millis(1)),
            window: Mutex::new(Window::default()),
        }
    }

    /// The minimum time between two lines.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Records one escalation at `now`; returns the line to write now, if any. O(1).
    pub fn record(&self, e: &UnackedCritical, now: Instant) -> Option<EscalationLine> {
        let mut w = self.lock();
        let due = w
            .last_line
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        if !due {
            w.note(e.user.as_str());
            return None;
        }
        if w.pending == 0 {
            w.last_line = Some(now);
            return Some(EscalationLine::One {
                user: e.user.as_str().to_owned(),
                run_id: e.run_id.as_deref().unwrap_or("").to_owned(),
                seq: e.seq,
                event_type: e.kind.as_str().to_owned(),
                connections: e.connections,
                ever_connected: e.ever_connected,
            });
        }
        w.note(e.user.as_str());
        Some(w.summary(now))
    }

    /// The summary of what was counted, once the interval since the last line has passed at
    /// `now`; `None` when nothing is pending or it is too early. Called periodically.
    pub fn flush(&self, now: Instant) -> Option<EscalationLine> {
        let mut w = self.lock();
        let due = w
            .last_line
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        (w.pending > 0 && due).then(|| w.summary(now))
    }

    /// The summary of what was counted, whatever the time (at shutdown).
    pub fn take(&self, now: Instant) -> Option<EscalationLine> {
        let mut w = self.lock();
        (w.pending > 0).then(|| w.summary(now))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the operator should do, appended to every line.
const WHAT_TO_DO: &str = "clients must send {\"type\":\"ack\",\"seq\":N} for what they receive; \
     see docs/operations.md#emergency-escalation";

impl EscalationLine {
    /// The line's message, with the deadline it refers to.
    pub fn message(&self, ack_deadline: Duration) -> String {
        let deadline = ack_deadline.as_millis();
        match self {
            EscalationLine::One {
                user,
                event_type,
                connections,
                ever_connected,
                ..
            } => {
                let who = if *ever_connected {
                    format!("{connections} connection(s) open")
                } else {
                    "the user never connected; set [escalation] never_connected = \"skip\" \
                     to stop escalating such users"
                        .to_owned()
                };
                format!(
                    "escalation: critical {event_type} for user {user} not acknowledged within \
                     its deadline (ack_deadline={deadline}ms; {who}); {WHAT_TO_DO}"
                )
            }
            EscalationLine::Summary {
                events,
                over,
                users,
                more_users,
            } => {
                let more = if *more_users { ", and others" } else { "" };
                format!(
                    "escalation: {events} critical events not acknowledged within their deadline \
                     (ack_deadline={deadline}ms) in the last {:.1}s (users: {}{more}); the log \
                     is limited to one escalation line per interval, every one is counted in \
                     agentcast_escalations_total and posted to the webhook if configured; \
                     {WHAT_TO_DO}",
                    over.as_secs_f64(),
                    users.join(", "),
                )
            }
        }
    }
}

/// Lets one line through per interval and counts those it held back (for the webhook's
/// failure and drop lines).
#[derive(Debug)]
pub(crate) struct Throttle {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last line)` when a line may be written at `now`.
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
        {
            s.0 = Some(now);
            Some(std::mem::take(&mut s.1))
        } else {
            s.1 += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentcast_engine::{EventKind, UserId};

    fn esc(user: &str, seq: u64) -> UnackedCritical {
        UnackedCritical {
            user: UserId::new(user).unwrap(),
            seq,
            run_id: Some("run-1".into()),
            kind: EventKind::AgentError,
            published_ms: 0,
            connections: 0,
            ever_connected: false,
        }
    }

    #[test]
    fn a_burst_of_two_thousand_writes_one_line_per_interval() {
        let log = EscalationLog::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let mut lines = Vec::new();
        // 2,000 escalations over 2.5 s, one every 1.25 ms, 300 distinct users.
        for i in 0..2_000u64 {
            let now = t0 + Duration::from_micros(i * 1_250);
            lines.extend(log.record(&esc(&format!("u{}", i % 300), i), now));
            if i % 40 == 0 {
                lines.extend(log.flush(now));
            }
        }
        lines.extend(log.flush(t0 + Duration::from_secs(4)));
        // First one in full at 0 s, then a summary at 1 s, 2 s and the rest at the end.
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(matches!(&lines[0], EscalationLine::One { user, seq: 0, .. } if user == "u0"));
        let mut total = 1;
        for l in &lines[1..] {
            let EscalationLine::Summary {
                events,
                users,
                more_users,
                over,
            } = l
            else {
                panic!("{l:?}")
            };
            total += events;
            assert_eq!(users.len(), USERS_NAMED);
            assert!(*more_users);
            assert!(*over >= Duration::from_secs(1), "{over:?}");
        }
        assert_eq!(total, 2_000, "every escalation is in a line");
    }

    #[test]
    fn a_lone_escalation_is_written_at_once_in_full_and_says_what_to_do() {
        let log = EscalationLog::new(Duration::from_secs(1));
        let line = log
            .record(&esc("olga", 7), Instant::now())
            .expect("at once");
        let m = line.message(Duration::from_secs(30));
        assert!(
            m.starts_with("escalation: critical agent_error for user olga not acknowledged"),
            "{m}"
        );
        assert!(m.contains("ack_deadline=30000ms"), "{m}");
        assert!(m.contains("never_connected = \"skip\""), "{m}");
        assert!(m.contains("{\"type\":\"ack\",\"seq\":N}"), "{m}");
        assert!(log.flush(Instant::now() + Duration::from_secs(5)).is_none());
    }

    #[test]
    fn repeated_users_are_named_once() {
        let log = EscalationLog::new(Duration::from_secs(1));
        let t0 = Instant::now();
        log.record(&esc("a", 1), t0);
        for i in 0..10 {
            assert!(log.record(&esc("b", i), t0).is_none());
        }
        let Some(EscalationLine::Summary {
            events,
            users,
            more_users,
            ..
        }) = log.flush(t0 + Duration::from_secs(1))
        else {
            panic!("a summary is due")
        };
        assert_eq!(
            (events, users, more_users),
            (10, vec!["b".to_owned()], false)
        );
        assert!(
            log.take(t0).is_none(),
            "nothing is pending after the summary"
        );
    }

    #[test]
    fn the_throttle_lets_one_line_through_per_interval_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        for _ in 0..5 {
            assert_eq!(t.allow(t0 + Duration::from_millis(10)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_secs(1)), Some(5));
    }
}
