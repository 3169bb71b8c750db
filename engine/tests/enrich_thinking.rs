//! `agent_thinking` enrichment through the publish path: `meta.progress` from the publisher's
//! percentage or step i of n, and `meta.urgency` from elapsed time against the run's expected
//! duration (tiny expected durations instead of long sleeps).

mod common;

use std::time::{Duration, Instant};

use agentcast_engine::{Connection, EventKind, Hub, HubConfig, UserId};
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

/// The documented rule, with the default thresholds (0.5 and 1.0).
fn expected_urgency(elapsed: u64, expected: u64) -> &'static str {
    let r = elapsed as f64 / expected as f64;
    if r >= 1.0 {
        "high"
    } else if r >= 0.5 {
        "normal"
    } else {
        "low"
    }
}

#[test]
fn urgency_follows_elapsed_against_the_runs_expected_duration() {
    let (hub, u, mut conn) = setup(one_shard());
    // A run expected to take 100 ms: thinking events every few ms walk through all three
    // levels; each is checked against the elapsed_ms delivered with it.
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentStarted,
        "r",
        r#"{"expected_ms":100}"#,
    );
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r", "{}");
        let elapsed = e["meta"]["elapsed_ms"].as_u64().unwrap();
        let urgency = e["meta"]["urgency"].as_str().unwrap().to_owned();
        assert_eq!(urgency, expected_urgency(elapsed, 100), "at {elapsed} ms");
        if !seen.contains(&urgency) {
            seen.push(urgency);
        }
        if elapsed > 120 {
            break;
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    assert_eq!(seen, ["low", "normal", "high"]);
}

#[test]
fn without_expected_ms_the_configured_default_applies() {
    let mut cfg = one_shard();
    cfg.enrichment.expected_run = Duration::from_millis(1);
    let (hub, u, mut conn) = setup(cfg);
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "quick", "{}");
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentStarted,
        "slow",
        r#"{"expected_ms":3600000}"#,
    );
    std::thread::sleep(Duration::from_millis(3));
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
    let (hub, u, mut conn) = setup(cfg);
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentStarted,
        "r",
        r#"{"expected_ms":5}"#,
    );
    let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r", "{}");
    let elapsed = e["meta"]["elapsed_ms"].as_u64().unwrap();
    if elapsed < 10 {
        assert_eq!(e["meta"]["urgency"], "normal");
    }
    std::thread::sleep(Duration::from_millis(12));
    let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r", "{}");
    assert_eq!(e["meta"]["urgency"], "high");
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
