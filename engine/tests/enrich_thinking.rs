//! `agent_thinking` enrichment through the publish path: `meta.progress` from the publisher's
//! percentage or step i of n, and `meta.urgency` from elapsed time against the run's expected
//! duration, with a hand-set clock ([`ManualClock`]) instead of sleeps, so every urgency
//! assertion runs whatever the machine's speed.

mod common;

use std::time::Duration;

use agentcast_engine::{Connection, EventKind, Hub, HubConfig, ManualClock, UserId};
use common::*;
use serde_json::json;

fn setup(cfg: HubConfig) -> (Hub, UserId, Connection) {
    let hub = Hub::start(cfg).expect("hub starts");
    let u = user("thinker");
    let conn = hub.connect(u.clone(), Default::default()).wait().unwrap();
    (hub, u, conn)
}

fn one_shard() -> HubConfig {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg
}

use common::publish_one as send;

#[test]
fn progress_comes_from_a_percentage_or_from_step_of_total() {
    let (hub, u, mut conn) = setup(one_shard());
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    let cases = [
        (r#"{"progress":42.6}"#, json!({"percent": 43})),
        (r#"{"progress":150}"#, json!({"percent": 100})),
        (r#"{"progress":-3}"#, json!({"percent": 0})),
        (
            r#"{"step":3,"total_steps":7}"#,
            json!({"percent": 42, "step": 3, "total": 7}),
        ),
        (
            r#"{"step":9,"total_steps":7}"#,
            json!({"percent": 100, "step": 9, "total": 7}),
        ),
        (r#"{"step":2}"#, json!({"step": 2})),
        (
            r#"{"progress":25,"step":1,"total_steps":2}"#,
            json!({"percent": 25, "step": 1, "total": 2}),
        ),
    ];
    for (data, progress) in cases {
        let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r", data);
        assert_eq!(e["meta"]["progress"], progress, "data {data}: {e}");
    }
    for data in [
        r#"{}"#,
        r#"{"progress":"half"}"#,
        r#"{"step":-1,"total_steps":0}"#,
        "[1]",
    ] {
        let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r", data);
        assert!(e["meta"].get("progress").is_none(), "data {data}: {e}");
    }
}

#[test]
fn the_typed_emitter_gives_the_same_progress_as_json() {
    let (hub, u, mut conn) = setup(one_shard());
    let run = hub.emitter(u, "r");
    run.started("planner", None).unwrap().wait().unwrap();
    run.thinking(3, 7, "Comparing").unwrap().wait().unwrap();
    run.thinking_percent(42.6, "Almost")
        .unwrap()
        .wait()
        .unwrap();
    let got = drain(&mut conn);
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[1]["data"],
        json!({"message": "Comparing", "step": 3, "total_steps": 7})
    );
    assert_eq!(
        got[1]["meta"]["progress"],
        json!({"percent": 42, "step": 3, "total": 7})
    );
    assert_eq!(
        got[2]["data"],
        json!({"message": "Almost", "progress": 42.6})
    );
    assert_eq!(got[2]["meta"]["progress"], json!({"percent": 43}));
}

/// A one-shard hub whose run tracking reads `clock` (set by hand: no sleeping, so the
/// assertions hold however slow the machine is).
fn clocked(mut cfg: HubConfig) -> (Hub, UserId, Connection, ManualClock) {
    let clock = ManualClock::at(T0);
    cfg.enrichment.clock = Some(clock.clone());
    let (hub, u, conn) = setup(cfg);
    (hub, u, conn, clock)
}

/// The test clock's start (any origin works; this one looks like a real time).
const T0: u64 = 1_764_000_000_000;

#[test]
fn urgency_follows_elapsed_against_the_runs_expected_duration() {
    let (hub, u, mut conn, clock) = clocked(one_shard());
    // A run expected to take 100 ms, observed on both sides of each threshold (0.5 and 1.0).
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentStarted,
        "r",
        r#"{"expected_ms":100}"#,
    );
    for (at, urgency) in [
        (0, "low"),
        (49, "low"),
        (50, "normal"),
        (99, "normal"),
        (100, "high"),
        (250, "high"),
    ] {
        clock.set(T0 + at);
        let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r", "{}");
        assert_eq!(e["meta"]["elapsed_ms"], at, "{e}");
        assert_eq!(e["meta"]["urgency"], urgency, "at {at} ms: {e}");
    }
}

#[test]
fn without_expected_ms_the_configured_default_applies() {
    let mut cfg = one_shard();
    cfg.enrichment.expected_run = Duration::from_millis(1_000);
    let (hub, u, mut conn, clock) = clocked(cfg);
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "quick", "{}");
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentStarted,
        "slow",
        r#"{"expected_ms":3600000}"#,
    );
    clock.advance(1_000);
    let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "quick", "{}");
    assert_eq!(e["meta"]["urgency"], "high", "{e}");
    let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "slow", "{}");
    assert_eq!(e["meta"]["urgency"], "low", "{e}");
}

#[test]
fn urgency_thresholds_are_configurable() {
    let mut cfg = one_shard();
    // Everything is at least normal; high from twice the expected duration.
    cfg.enrichment.urgency_normal_at = 0.0;
    cfg.enrichment.urgency_high_at = 2.0;
    let (hub, u, mut conn, clock) = clocked(cfg);
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentStarted,
        "r",
        r#"{"expected_ms":5}"#,
    );
    for (at, urgency) in [(0, "normal"), (9, "normal"), (10, "high")] {
        clock.set(T0 + at);
        let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r", "{}");
        assert_eq!(e["meta"]["urgency"], urgency, "at {at} ms: {e}");
    }
}

#[test]
fn an_untracked_run_gets_progress_but_no_urgency() {
    let (hub, u, mut conn) = setup(one_shard());
    let e = send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentThinking,
        "nope",
        r#"{"progress":10}"#,
    );
    assert_eq!(e["meta"]["progress"]["percent"], 10);
    assert!(e["meta"].get("urgency").is_none());
    assert_eq!(e["meta"]["lifecycle"], "unstarted_run");
}
