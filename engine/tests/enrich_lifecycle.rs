//! Run lifecycle tracking through the public publish path: `elapsed_ms`, lifecycle flags on
//! out-of-order events (delivered anyway, counted in stats), closing errors, and the
//! publisher's `data` reaching the client byte for byte next to `meta`.

mod common;

use agentcast_engine::frame::payload_of;
use agentcast_engine::{
    Connection, Data, EnrichmentConfig, Event, EventKind, Hub, HubConfig, Target, UserId,
};
use bytes::Bytes;
use common::*;
use serde_json::Value;

fn hub_with(enrichment: EnrichmentConfig) -> Hub {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.enrichment = enrichment;
    Hub::start(cfg).expect("hub starts")
}

fn setup() -> (Hub, UserId, Connection) {
    let hub = hub_with(EnrichmentConfig::default());
    let u = user("alice");
    let conn = hub.connect(u.clone(), Default::default()).wait().unwrap();
    (hub, u, conn)
}

/// Publishes and returns the one delivered event.
use common::publish_one as send;

#[test]
fn a_well_ordered_run_is_never_flagged_and_carries_elapsed_ms() {
    let (hub, u, mut conn) = setup();
    let steps = [
        (EventKind::AgentStarted, r#"{"goal":"x"}"#),
        (EventKind::AgentThinking, r#"{"message":"hm"}"#),
        (EventKind::ToolExecuting, r#"{"tool":"web_search"}"#),
        (EventKind::ToolCompleted, r#"{"tool":"web_search"}"#),
        (EventKind::AgentCompleted, r#"{"result":1}"#),
    ];
    let mut last = 0;
    for (kind, data) in steps {
        std::thread::sleep(std::time::Duration::from_millis(3));
        let e = send(&hub, &mut conn, &u, kind.clone(), "r1", data);
        assert_eq!(e["type"], kind.as_str());
        assert!(e["meta"].get("lifecycle").is_none(), "{e}");
        let elapsed = e["meta"]["elapsed_ms"].as_u64().expect("elapsed_ms");
        assert!(elapsed >= last, "elapsed goes forward: {elapsed} < {last}");
        last = elapsed;
    }
    assert!(
        last >= 12,
        "four 3 ms sleeps lie between start and end, got {last}"
    );
    hub.sync_blocking(false).unwrap();
    let s = hub.stats().total;
    assert_eq!(
        (s.runs_started, s.runs_finished, s.lifecycle_violations),
        (1, 1, 0)
    );
    assert_eq!(s.runs, 1, "a finished run is remembered until its TTL");
}

#[test]
fn agent_started_reports_zero_elapsed() {
    let (hub, u, mut conn) = setup();
    let e = send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    assert_eq!(e["meta"], serde_json::json!({"elapsed_ms": 0}));
}

#[test]
fn events_of_a_run_never_started_are_delivered_flagged_and_counted() {
    let (hub, u, mut conn) = setup();
    for kind in [
        EventKind::AgentThinking,
        EventKind::ToolExecuting,
        EventKind::ToolCompleted,
        EventKind::AgentCompleted,
        EventKind::AgentError,
    ] {
        let e = send(
            &hub,
            &mut conn,
            &u,
            kind.clone(),
            "ghost",
            r#"{"tool":"x"}"#,
        );
        assert_eq!(e["type"], kind.as_str());
        assert_eq!(e["meta"]["lifecycle"], "unstarted_run", "{e}");
        assert!(
            e["meta"].get("elapsed_ms").is_none(),
            "no start, no elapsed: {e}"
        );
    }
    hub.sync_blocking(false).unwrap();
    let s = hub.stats().total;
    assert_eq!(s.lifecycle_violations, 5);
    assert_eq!(s.runs, 0, "flagged events open no run");
}

#[test]
fn events_after_completion_are_flagged_after_end() {
    let (hub, u, mut conn) = setup();
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    send(&hub, &mut conn, &u, EventKind::AgentCompleted, "r", "{}");
    for kind in [
        EventKind::AgentThinking,
        EventKind::AgentCompleted,
        EventKind::AgentStarted,
    ] {
        let e = send(&hub, &mut conn, &u, kind, "r", "{}");
        assert_eq!(e["meta"]["lifecycle"], "after_end", "{e}");
        assert!(e["meta"]["elapsed_ms"].is_u64(), "elapsed still known: {e}");
    }
    hub.sync_blocking(false).unwrap();
    let s = hub.stats().total;
    assert_eq!((s.runs_started, s.runs_finished), (1, 1));
    assert_eq!(s.lifecycle_violations, 3);
}

#[test]
fn a_second_start_of_a_live_run_is_flagged_and_keeps_the_first_start() {
    let (hub, u, mut conn) = setup();
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let e = send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    assert_eq!(e["meta"]["lifecycle"], "already_started");
    assert!(e["meta"]["elapsed_ms"].as_u64().unwrap() >= 5);
}

#[test]
fn a_tool_completion_without_its_execution_is_flagged() {
    let (hub, u, mut conn) = setup();
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolExecuting,
        "r",
        r#"{"tool":"a"}"#,
    );
    let e = send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolCompleted,
        "r",
        r#"{"tool":"b"}"#,
    );
    assert_eq!(e["meta"]["lifecycle"], "tool_not_executing");
    assert!(e["meta"].get("duration_ms").is_none());
    let e = send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolCompleted,
        "r",
        r#"{"tool":"a"}"#,
    );
    assert!(e["meta"].get("lifecycle").is_none(), "{e}");
    assert!(e["meta"]["duration_ms"].is_u64());
    // The same call cannot complete twice.
    let e = send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolCompleted,
        "r",
        r#"{"tool":"a"}"#,
    );
    assert_eq!(e["meta"]["lifecycle"], "tool_not_executing");
}

#[test]
fn a_closing_error_ends_the_run_and_a_non_fatal_one_does_not() {
    let (hub, u, mut conn) = setup();
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    // rate_limit is medium: below the default closing severity (high).
    let e = send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentError,
        "r",
        r#"{"code":"rate_limit"}"#,
    );
    assert_eq!(e["meta"]["fatal"], false);
    let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r", "{}");
    assert!(e["meta"].get("lifecycle").is_none(), "run still live: {e}");
    // "fatal": false keeps even a critical error's run open ...
    let e = send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentError,
        "r",
        r#"{"code":"internal","fatal":false}"#,
    );
    assert_eq!(
        (e["meta"]["severity"].as_str(), e["meta"]["fatal"].as_bool()),
        (Some("critical"), Some(false))
    );
    let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r", "{}");
    assert!(e["meta"].get("lifecycle").is_none(), "run still live: {e}");
    // ... and an auth error (high) closes it.
    let e = send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentError,
        "r",
        r#"{"code":"AUTH_EXPIRED"}"#,
    );
    assert_eq!(e["meta"]["fatal"], true);
    let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "r", "{}");
    assert_eq!(e["meta"]["lifecycle"], "after_end");
    // "fatal": true closes a run whatever the severity.
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r2", "{}");
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::AgentError,
        "r2",
        r#"{"code":"invalid_input","fatal":true}"#,
    );
    let e = send(&hub, &mut conn, &u, EventKind::ToolExecuting, "r2", "{}");
    assert_eq!(e["meta"]["lifecycle"], "after_end");
    hub.sync_blocking(false).unwrap();
    assert_eq!(hub.stats().total.runs_finished, 2);
}

#[test]
fn runs_are_per_user_and_per_run_id() {
    let (hub, u, mut conn) = setup();
    let bob = user("bob");
    let mut bob_conn = hub.connect(bob.clone(), Default::default()).wait().unwrap();
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    // Bob's run "r" is a different run: never started.
    let e = send(
        &hub,
        &mut bob_conn,
        &bob,
        EventKind::AgentThinking,
        "r",
        "{}",
    );
    assert_eq!(e["meta"]["lifecycle"], "unstarted_run");
    // Alice's run "other" neither.
    let e = send(&hub, &mut conn, &u, EventKind::AgentThinking, "other", "{}");
    assert_eq!(e["meta"]["lifecycle"], "unstarted_run");
}

#[test]
fn custom_events_get_elapsed_inside_a_run_and_nothing_outside() {
    let (hub, u, mut conn) = setup();
    let kind = EventKind::parse("my.progress").unwrap();
    let e = send(&hub, &mut conn, &u, kind.clone(), "r", "{}");
    assert!(
        e.get("meta").is_none(),
        "untracked custom event: no meta: {e}"
    );
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    let e = send(&hub, &mut conn, &u, kind, "r", "{}");
    assert!(e["meta"]["elapsed_ms"].is_u64());
    assert!(e["meta"].get("lifecycle").is_none());
    hub.sync_blocking(false).unwrap();
    assert_eq!(hub.stats().total.lifecycle_violations, 0);
}

#[test]
fn the_publishers_data_is_delivered_byte_for_byte_after_meta() {
    let (hub, u, mut conn) = setup();
    let data = r#"{ "tool" : "web_search", "n": 1.50, "s":"\u00e9", "deep":{"a":[1,{"b":null}]} }"#;
    hub.publish(
        Target::User(u.clone()),
        event(EventKind::AgentStarted, "r", "{}"),
    )
    .unwrap()
    .wait()
    .unwrap();
    hub.publish(Target::User(u), event(EventKind::ToolExecuting, "r", data))
        .unwrap()
        .wait()
        .unwrap();
    let mut frames: Vec<Bytes> = Vec::new();
    conn.drain_into(&mut frames, 16);
    assert_eq!(frames.len(), 2);
    let text = std::str::from_utf8(payload_of(&frames[1])).unwrap();
    assert!(text.ends_with(&format!(r#","data":{data}}}"#)), "{text}");
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["meta"]["category"], "search");
}

#[test]
fn disabled_enrichment_delivers_events_as_before() {
    let mut e = EnrichmentConfig::default();
    e.enabled = false;
    let hub = hub_with(e);
    let u = user("u");
    let mut conn = hub.connect(u.clone(), Default::default()).wait().unwrap();
    for kind in EventKind::AGENT {
        let ev = Event::new(
            kind,
            "r",
            Data::from_json(r#"{"tool":"web_search"}"#).unwrap(),
        );
        hub.publish(Target::User(u.clone()), ev)
            .unwrap()
            .wait()
            .unwrap();
    }
    let got = drain(&mut conn);
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|e| e.get("meta").is_none()), "{got:?}");
    hub.sync_blocking(false).unwrap();
    let s = hub.stats().total;
    assert_eq!((s.runs_started, s.runs, s.lifecycle_violations), (0, 0, 0));
}
