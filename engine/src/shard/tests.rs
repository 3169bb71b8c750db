//! Deterministic shard tests: the time is an input (see [`crate::clock`]), so TTLs, the seq
//! clock cap and ack deadlines are tested without a worker thread and without sleeping.

use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;
use crate::conn::shared::ConnectOptions;
use crate::escalation::Dispatcher;
use crate::event::Data;

const T0: u64 = 1_700_000_000_000;

fn shard(cfg: HubConfig) -> (Shard, ShardCounters) {
    let cfg = HubConfig { shards: 1, ..cfg };
    let sender = Dispatcher::start(None, 16).sender();
    (Shard::new(Arc::new(cfg), sender), ShardCounters::default())
}

fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn publish(shard: &mut Shard, c: &ShardCounters, u: &UserId, kind: EventKind, ts_ms: u64) {
    let priority = shard.cfg.priorities.priority(&kind);
    shard.handle(
        Command::Publish {
            user: u.clone(),
            event: Event::new(kind, "run-1", Data::empty()),
            priority,
            ts_ms,
            born_us: 0,
            reply: None,
        },
        c,
        &mut Now::at(ts_ms),
    );
}

fn connect(shard: &mut Shard, u: &UserId, id: u64, now: u64) -> usize {
    let shared = Arc::new(ConnShared::new(shard.cfg.write_batch));
    let (key, _) = shard.connect(
        u.clone(),
        ConnId(id),
        shared,
        &ConnectOptions::default(),
        None,
        now,
    );
    key
}

#[test]
fn an_idle_user_is_evicted_exactly_at_its_ttl() {
    let (mut s, c) = shard(HubConfig {
        user_ttl: std::time::Duration::from_secs(60),
        ..HubConfig::default()
    });
    let (alice, bob) = (user("alice"), user("bob"));
    // Alice never connects: idle since her event. Bob leaves at T0 + 10 s.
    publish(&mut s, &c, &alice, EventKind::ToolExecuting, T0);
    let key = connect(&mut s, &bob, 1, T0);
    s.handle(
        Command::Disconnect { key, id: ConnId(1) },
        &c,
        &mut Now::at(T0 + 10_000),
    );
    s.housekeeping(T0 + 59_999);
    assert_eq!(s.users.len(), 2);
    s.housekeeping(T0 + 60_000);
    assert!(!s.users.contains_key(ukey(&alice)), "alice's TTL is over");
    assert!(s.users.contains_key(ukey(&bob)), "bob left 10 s later");
    s.housekeeping(T0 + 69_999);
    assert_eq!(s.users.len(), 1);
    s.housekeeping(T0 + 70_000);
    assert!(s.users.is_empty());
    assert_eq!(s.tally.users_evicted, 2);
}

#[test]
fn more_than_1000_events_in_one_millisecond_wait_for_the_next() {
    let clock = ManualClock::at(T0);
    let (mut s, c) = shard(HubConfig {
        clock: Arc::new(clock.clone()),
        history_len: 10,
        ..HubConfig::default()
    });
    let u = user("fast");
    // Each publish carries the time its publisher read, as the hub's does.
    for _ in 0..2_500 {
        publish(&mut s, &c, &u, EventKind::ToolExecuting, clock.now_ms());
    }
    let state = &s.users[ukey(&u)];
    // The state's seqs start at T0 × 1000; the 1,000th reaches (T0 + 1) × 1000 and waits for
    // T0 + 1; the 2,000th waits for T0 + 2.
    assert_eq!(state.last_seq, T0 * 1000 + 2_500);
    assert_eq!(clock.waits(), vec![T0 + 1, T0 + 2]);
    assert_eq!(s.tally.seq_clock_waits, 2);
    assert!(state.last_seq < (clock.now_ms() + 1) * 1000);
    // A publisher's stale timestamp is not a wait when the clock is already there.
    publish(&mut s, &c, &u, EventKind::ToolExecuting, T0);
    assert_eq!(s.tally.seq_clock_waits, 2);
    assert_eq!(clock.waits().len(), 2);
}

#[test]
fn an_unacked_critical_event_is_escalated_at_its_deadline_and_an_acked_one_is_not() {
    let (mut s, c) = shard(HubConfig {
        ack_deadline: std::time::Duration::from_secs(30),
        ..HubConfig::default()
    });
    let u = user("carol");
    connect(&mut s, &u, 1, T0);
    publish(&mut s, &c, &u, EventKind::AgentStarted, T0);
    publish(&mut s, &c, &u, EventKind::AgentCompleted, T0 + 1_000);
    let first = s.users[ukey(&u)].last_seq - 1;
    s.handle(
        Command::Ack {
            user: u.clone(),
            seq: first,
        },
        &c,
        &mut Now::at(T0 + 2_000),
    );
    assert_eq!(s.unacked, 1);
    s.housekeeping(T0 + 29_999);
    assert_eq!(s.tally.escalated, 0);
    s.housekeeping(T0 + 30_000);
    assert_eq!(s.tally.escalated, 0, "the first one was acked in time");
    s.housekeeping(T0 + 30_999);
    assert_eq!(s.tally.escalated, 0);
    s.housekeeping(T0 + 31_000);
    assert_eq!(s.tally.escalated, 1, "the second one is overdue");
    s.housekeeping(T0 + 90_000);
    assert_eq!(s.tally.escalated, 1, "once");
}

#[test]
fn a_never_connected_users_overdue_event_follows_the_policy() {
    let (mut s, c) = shard(HubConfig {
        ack_deadline: std::time::Duration::from_secs(5),
        escalate_never_connected: false,
        ..HubConfig::default()
    });
    publish(&mut s, &c, &user("dave"), EventKind::AgentError, T0);
    s.housekeeping(T0 + 5_000);
    assert_eq!((s.tally.escalated, s.tally.escalations_skipped), (0, 1));
}
