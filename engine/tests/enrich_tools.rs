//! Tool enrichment through the publish path: catalog `category`/`purpose`, `duration_ms`,
//! and `estimated_ms` learned as a moving average of observed durations, shared by the users
//! of a shard.

mod common;

use std::time::Duration;

use agentcast_engine::{Connection, Data, EventKind, Hub, HubConfig, ToolInfo, UserId};
use common::*;
use serde_json::{Value, json};

fn one_shard() -> HubConfig {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg
}

fn connect(hub: &Hub, name: &str) -> (UserId, Connection) {
    let u = user(name);
    let conn = hub.connect(u.clone(), Default::default()).wait().unwrap();
    (u, conn)
}

use common::publish_one as send;

#[test]
fn catalog_gives_category_and_purpose_and_unknown_tools_get_a_default() {
    let mut cfg = one_shard();
    cfg.enrichment.tools.insert(
        "crm_lookup".into(),
        ToolInfo::new("crm", "Looking up the customer").with_estimate(800),
    );
    cfg.enrichment.unknown_tool_category = "misc".into();
    let hub = Hub::start(cfg).unwrap();
    let (u, mut conn) = connect(&hub, "u");
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    let mut meta = |tool: &str| {
        let e = send(
            &hub,
            &mut conn,
            &u,
            EventKind::ToolExecuting,
            "r",
            &json!({ "tool": tool }).to_string(),
        );
        e["meta"].clone()
    };
    let m = meta("web_search");
    assert_eq!(
        (m["category"].as_str(), m["purpose"].as_str()),
        (Some("search"), Some("Searching the web"))
    );
    assert!(
        m.get("estimated_ms").is_none(),
        "nothing learned, no prior: {m}"
    );
    let m = meta("code_interpreter");
    assert_eq!(m["category"], "code");
    let m = meta("crm_lookup");
    assert_eq!(
        (m["category"].as_str(), m["purpose"].as_str()),
        (Some("crm"), Some("Looking up the customer"))
    );
    assert_eq!(m["estimated_ms"], 800, "catalog prior");
    let m = meta("Web_Search");
    assert_eq!(
        (m["category"].as_str(), m["purpose"].as_str()),
        (Some("misc"), Some("Running Web_Search"))
    );
}

#[test]
fn duration_ms_pairs_completions_with_executions_by_tool_and_call_id() {
    let hub = Hub::start(one_shard()).unwrap();
    let (u, mut conn) = connect(&hub, "u");
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolExecuting,
        "r",
        r#"{"tool":"t","call_id":"slow"}"#,
    );
    std::thread::sleep(Duration::from_millis(30));
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolExecuting,
        "r",
        r#"{"tool":"t","call_id":"fast"}"#,
    );
    let fast = send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolCompleted,
        "r",
        r#"{"tool":"t","call_id":"fast"}"#,
    );
    let slow = send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolCompleted,
        "r",
        r#"{"tool":"t","call_id":"slow"}"#,
    );
    let (fast, slow) = (
        fast["meta"]["duration_ms"].as_u64().unwrap(),
        slow["meta"]["duration_ms"].as_u64().unwrap(),
    );
    assert!(slow >= 30, "slow call measured from its own start: {slow}");
    assert!(fast < slow, "fast {fast} vs slow {slow}");
}

/// The documented moving average, replayed from the delivered `duration_ms` values.
fn ewma(durations: &[u64], w: f64) -> Option<u64> {
    let mut v: Option<f64> = None;
    for &d in durations {
        v = Some(match v {
            None => d as f64,
            Some(v) => v + w * (d as f64 - v),
        });
    }
    v.map(|v| v.round() as u64)
}

#[test]
fn estimates_are_the_moving_average_of_observed_durations_and_converge() {
    let hub = Hub::start(one_shard()).unwrap();
    let (u, mut conn) = connect(&hub, "u");
    let run = hub.emitter(u.clone(), "r");
    run.started("a", None).unwrap().wait().unwrap();
    drain(&mut conn);
    let mut observed = Vec::new();
    // Ten short calls, then twenty of ~25 ms: the estimate tracks the recent durations.
    for i in 0..30 {
        run.tool_started("vector_search", Data::empty())
            .unwrap()
            .wait()
            .unwrap();
        std::thread::sleep(Duration::from_millis(if i < 10 { 1 } else { 25 }));
        run.tool_finished("vector_search", Data::empty())
            .unwrap()
            .wait()
            .unwrap();
        let got = drain(&mut conn);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0]["meta"].get("estimated_ms").and_then(Value::as_u64),
            ewma(&observed, 0.2),
            "estimate before call {i} (observed {observed:?})"
        );
        observed.push(got[1]["meta"]["duration_ms"].as_u64().unwrap());
    }
    run.tool_started("vector_search", Data::empty())
        .unwrap()
        .wait()
        .unwrap();
    let est = drain(&mut conn)[0]["meta"]["estimated_ms"]
        .as_u64()
        .unwrap();
    let recent = &observed[20..];
    let (lo, hi) = (*recent.iter().min().unwrap(), *recent.iter().max().unwrap());
    assert!(
        est >= lo.saturating_sub(1) && est <= hi + 1,
        "estimate {est} converged into the recent range {lo}..={hi}"
    );
    assert!(est >= 20, "far from the first, short calls: {est}");
}

#[test]
fn estimates_are_shared_by_all_users_of_a_shard() {
    let hub = Hub::start(one_shard()).unwrap();
    let (a, mut a_conn) = connect(&hub, "a");
    let (b, mut b_conn) = connect(&hub, "b");
    send(&hub, &mut a_conn, &a, EventKind::AgentStarted, "r", "{}");
    send(
        &hub,
        &mut a_conn,
        &a,
        EventKind::ToolExecuting,
        "r",
        r#"{"tool":"sql_query"}"#,
    );
    std::thread::sleep(Duration::from_millis(10));
    let done = send(
        &hub,
        &mut a_conn,
        &a,
        EventKind::ToolCompleted,
        "r",
        r#"{"tool":"sql_query"}"#,
    );
    let d = done["meta"]["duration_ms"].as_u64().unwrap();
    send(
        &hub,
        &mut b_conn,
        &b,
        EventKind::AgentStarted,
        "other",
        "{}",
    );
    let e = send(
        &hub,
        &mut b_conn,
        &b,
        EventKind::ToolExecuting,
        "other",
        r#"{"tool":"sql_query"}"#,
    );
    assert_eq!(
        e["meta"]["estimated_ms"], d,
        "b sees what a's run taught the shard"
    );
    hub.sync_blocking(false).unwrap();
    assert_eq!(hub.stats().total.learned_tools, 1);
}

#[test]
fn a_prior_estimate_is_the_start_of_learning() {
    let mut cfg = one_shard();
    cfg.enrichment.estimate_weight = 0.5;
    cfg.enrichment.tools.insert(
        "slowpoke".into(),
        ToolInfo::new("x", "y").with_estimate(10_000),
    );
    let hub = Hub::start(cfg).unwrap();
    let (u, mut conn) = connect(&hub, "u");
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolExecuting,
        "r",
        r#"{"tool":"slowpoke"}"#,
    );
    let d = send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolCompleted,
        "r",
        r#"{"tool":"slowpoke"}"#,
    )["meta"]["duration_ms"]
        .as_u64()
        .unwrap();
    let e = send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolExecuting,
        "r",
        r#"{"tool":"slowpoke"}"#,
    );
    let expected = (10_000.0 + 0.5 * (d as f64 - 10_000.0)).round() as u64;
    assert_eq!(e["meta"]["estimated_ms"], expected);
}

#[test]
fn learned_tool_names_are_capped_per_shard() {
    let mut cfg = one_shard();
    cfg.enrichment.max_learned_tools = 3;
    let hub = Hub::start(cfg).unwrap();
    let (u, mut conn) = connect(&hub, "u");
    send(&hub, &mut conn, &u, EventKind::AgentStarted, "r", "{}");
    for i in 0..10 {
        let data = json!({ "tool": format!("tool-{i}") }).to_string();
        send(&hub, &mut conn, &u, EventKind::ToolExecuting, "r", &data);
        send(&hub, &mut conn, &u, EventKind::ToolCompleted, "r", &data);
    }
    hub.sync_blocking(false).unwrap();
    assert_eq!(hub.stats().total.learned_tools, 3);
    // A name beyond the cap still gets its catalog fields, just no learned estimate.
    let e = send(
        &hub,
        &mut conn,
        &u,
        EventKind::ToolExecuting,
        "r",
        r#"{"tool":"tool-9"}"#,
    );
    assert_eq!(e["meta"]["category"], "other");
    assert!(e["meta"].get("estimated_ms").is_none());
}
