//! The per-user ack cursor: a connection opened without `last_seq` receives the events after
//! it, so acknowledged events are never sent again and unacknowledged ones are.

mod common;

use agentcast_engine::{ConnectOptions, EventKind, Target};
use common::*;

#[test]
fn acknowledged_events_are_not_replayed() {
    let hub = hub(2);
    let u = user("acker");
    let mut conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let mut last = 0;
    for _ in 0..4 {
        last = hub
            .publish(
                Target::User(u.clone()),
                event(EventKind::AgentStarted, "r", "{}"),
            )
            .unwrap()
            .wait()
            .unwrap()
            .seq
            .unwrap();
    }
    let frames = drain(&mut conn);
    assert_eq!(frames.len(), 4);
    // Ack the first two only.
    conn.ack(last - 2);
    drop(conn);
    hub.sync_blocking(false).unwrap();
    let mut again = hub.connect(u, ConnectOptions::default()).wait().unwrap();
    assert_eq!(seqs(&drain(&mut again)), [last - 1, last]);
    assert_eq!(hub.stats().total.acks, 1);
}

#[test]
fn acking_everything_leaves_nothing_to_replay_and_nothing_unacked() {
    let hub = hub(1);
    let u = user("acker2");
    let conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let run = hub.emitter(u.clone(), "r");
    run.agent_started(Default::default())
        .unwrap()
        .wait()
        .unwrap();
    let done = run
        .agent_completed(Default::default())
        .unwrap()
        .wait()
        .unwrap()
        .seq
        .unwrap();
    hub.sync_blocking(false).unwrap();
    assert_eq!(hub.stats().total.unacked_critical, 2);
    conn.ack(done);
    hub.sync_blocking(false).unwrap();
    assert_eq!(hub.stats().total.unacked_critical, 0);
    let mut second = hub.connect(u, ConnectOptions::default()).wait().unwrap();
    assert_eq!(second.welcome().replayed, 0);
    assert!(drain(&mut second).is_empty());
}

#[test]
fn an_ack_beyond_the_latest_seq_does_not_swallow_future_events() {
    let hub = hub(1);
    let u = user("acker3");
    let conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    conn.ack(u64::MAX);
    hub.sync_blocking(false).unwrap();
    let seq = hub
        .publish(
            Target::User(u.clone()),
            event(EventKind::ToolCompleted, "r", "{}"),
        )
        .unwrap()
        .wait()
        .unwrap()
        .seq
        .unwrap();
    drop(conn);
    hub.sync_blocking(false).unwrap();
    let mut again = hub.connect(u, ConnectOptions::default()).wait().unwrap();
    assert_eq!(seqs(&drain(&mut again)), [seq]);
}
