//! Run state is bounded: finished runs leave after their TTL, abandoned live runs after the
//! idle TTL, a user holds at most `max_runs_per_user` runs, runs leave with their evicted
//! user, and hundreds of thousands of runs through the publish path keep the tables small.

mod common;

use std::time::Duration;

use agentcast_engine::{Connection, EventKind, Hub, HubConfig, Target, UserId};
use common::*;
use serde_json::Value;

fn start(f: impl FnOnce(&mut HubConfig)) -> Hub {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    f(&mut cfg);
    Hub::start(cfg).unwrap()
}

fn send(hub: &Hub, conn: &mut Connection, u: &UserId, kind: EventKind, run: &str) -> Value {
    common::publish_one(hub, conn, u, kind, run, "{}")
}

#[test]
fn a_finished_run_is_remembered_until_its_ttl_then_evicted() {
    for (ttl, runs_after, flag) in [
        (Duration::from_secs(3600), 1, "after_end"),
        (Duration::ZERO, 0, "unstarted_run"),
    ] {
        let hub = start(|c| c.enrichment.finished_run_ttl = ttl);
        let u = user("u");
        let mut conn = hub.connect(u.clone(), Default::default()).wait().unwrap();
        send(&hub, &mut conn, &u, EventKind::AgentStarted, "r");
        send(&hub, &mut conn, &u, EventKind::AgentCompleted, "r");
        hub.sync_blocking(true).unwrap();
        assert_eq!(
            hub.footprint_blocking().unwrap().runs,
            runs_after,
            "ttl {ttl:?}"
        );
        let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r");
        assert_eq!(e["meta"]["lifecycle"], flag, "ttl {ttl:?}");
        hub.sync_blocking(false).unwrap();
        assert_eq!(hub.stats().total.runs_evicted, 1 - runs_after as u64);
    }
}

#[test]
fn an_abandoned_live_run_is_evicted_after_the_idle_ttl() {
    for (idle, runs_after) in [(Duration::from_secs(3600), 1), (Duration::ZERO, 0)] {
        let hub = start(|c| c.enrichment.idle_run_ttl = idle);
        let u = user("u");
        let mut conn = hub.connect(u.clone(), Default::default()).wait().unwrap();
        send(&hub, &mut conn, &u, EventKind::AgentStarted, "r");
        hub.sync_blocking(true).unwrap();
        let f = hub.footprint_blocking().unwrap();
        assert_eq!(f.runs, runs_after, "idle ttl {idle:?}");
        assert_eq!(f.run_queue, runs_after, "idle ttl {idle:?}");
    }
}

#[test]
fn the_per_user_cap_evicts_finished_runs_first_then_the_least_recently_active() {
    let hub = start(|c| c.enrichment.max_runs_per_user = 3);
    let u = user("u");
    let mut conn = hub.connect(u.clone(), Default::default()).wait().unwrap();
    let step = || std::thread::sleep(Duration::from_millis(2));
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r0");
    step();
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r1");
    step();
    send(&hub, &mut conn, &u, EventKind::AgentCompleted, "r1");
    step();
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r2");
    step();
    // Full (r0, r1 finished, r2): r1 goes.
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r3");
    step();
    let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r1");
    assert_eq!(e["meta"]["lifecycle"], "unstarted_run");
    // r0 is active again, so r2 is now the least recently active live run.
    send(&hub, &mut conn, &u, EventKind::AgentThinking, "r0");
    step();
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r4");
    for (run, tracked) in [("r0", true), ("r2", false), ("r3", true), ("r4", true)] {
        let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, run);
        assert_eq!(e["meta"].get("lifecycle").is_none(), tracked, "{run}: {e}");
    }
    hub.sync_blocking(false).unwrap();
    assert_eq!(hub.footprint_blocking().unwrap().runs, 3);
    assert_eq!(hub.stats().total.runs_evicted, 2);
}

#[test]
fn runs_leave_with_their_evicted_user() {
    let hub = start(|c| c.user_ttl = Duration::ZERO);
    let u = user("offline");
    for run in ["a", "b", "c"] {
        hub.publish(
            Target::User(u.clone()),
            event(EventKind::AgentStarted, run, "{}"),
        )
        .unwrap()
        .wait()
        .unwrap();
    }
    hub.sync_blocking(true).unwrap();
    let f = hub.footprint_blocking().unwrap();
    assert_eq!((f.users, f.runs, f.run_queue), (0, 0, 0), "{f:?}");
    assert_eq!(hub.stats().total.runs, 0);
}

#[test]
fn hundreds_of_thousands_of_runs_keep_the_run_table_bounded() {
    const USERS: usize = 20;
    const CAP: usize = 16;
    const RUNS: usize = 200_000;
    let hub = start(|c| {
        c.enrichment.max_runs_per_user = CAP;
        c.enrichment.finished_run_ttl = Duration::ZERO;
        c.history_len = 16;
    });
    // Connected users (never evicted themselves): only the run rules bound their runs.
    let users: Vec<UserId> = (0..USERS).map(|i| user(&format!("u{i}"))).collect();
    let mut conns: Vec<Connection> = users
        .iter()
        .map(|u| hub.connect(u.clone(), Default::default()).wait().unwrap())
        .collect();
    let mut max_runs = 0;
    for n in 0..RUNS {
        let u = &users[n % USERS];
        let run = format!("run-{n}");
        hub.send(
            Target::User(u.clone()),
            event(EventKind::AgentStarted, &run, "{}"),
        )
        .unwrap();
        // Two in three runs complete; the rest are abandoned and hit the per-user cap.
        if n % 3 != 0 {
            hub.send(
                Target::User(u.clone()),
                event(EventKind::AgentCompleted, &run, "{}"),
            )
            .unwrap();
        }
        if n % 10_000 == 9_999 {
            hub.sync_blocking(true).unwrap();
            for c in &mut conns {
                drain(c);
            }
            let f = hub.footprint_blocking().unwrap();
            assert!(f.runs <= USERS * CAP, "runs {} after {n}", f.runs);
            assert!(
                f.run_queue <= 2 * f.runs + 1_024,
                "queue {} for {} runs",
                f.run_queue,
                f.runs
            );
            max_runs = max_runs.max(f.runs);
        }
    }
    hub.sync_blocking(false).unwrap();
    let s = hub.stats().total;
    assert_eq!(s.runs_started, RUNS as u64);
    assert_eq!(s.runs_started - s.runs_evicted, s.runs);
    assert!(max_runs > 0);
}
