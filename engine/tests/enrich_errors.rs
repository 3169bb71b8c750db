//! `agent_error` enrichment through the publish path: severity from the rule table,
//! user-facing message and recovery suggestions per category, configurable rules; and the
//! stateless enrichment of channel and broadcast events.

mod common;

use agentcast_engine::{
    ChannelName, Connection, ErrorCategory, EventKind, Hub, HubConfig, Severity, Target, UserId,
};
use common::*;
use serde_json::{Value, json};

fn one_shard() -> HubConfig {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg
}

fn setup(cfg: HubConfig) -> (Hub, UserId, Connection) {
    let hub = Hub::start(cfg).unwrap();
    let u = user("u");
    let conn = hub.connect(u.clone(), Default::default()).wait().unwrap();
    (hub, u, conn)
}

fn error_meta(hub: &Hub, conn: &mut Connection, u: &UserId, data: Value) -> Value {
    // Each error in its own run, so an earlier closing error does not flag the next one.
    let run = format!("r{}", data);
    hub.publish(
        Target::User(u.clone()),
        event(EventKind::AgentStarted, &run, "{}"),
    )
    .unwrap()
    .wait()
    .unwrap();
    hub.publish(
        Target::User(u.clone()),
        event(EventKind::AgentError, &run, &data.to_string()),
    )
    .unwrap()
    .wait()
    .unwrap();
    let got = drain(conn);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["data"], data, "publisher's data untouched");
    got[1]["meta"].clone()
}

#[test]
fn the_default_severity_table_classifies_codes_and_categories() {
    let (hub, u, mut conn) = setup(one_shard());
    let cases = [
        (json!({"code": "INTERNAL_ERROR"}), "critical", "internal"),
        (json!({"code": "worker_crash"}), "critical", "internal"),
        (json!({"code": 500}), "critical", "internal"),
        (json!({"code": "AUTH_TOKEN_EXPIRED"}), "high", "auth"),
        (json!({"code": 403}), "high", "auth"),
        (
            json!({"code": "context_length_exceeded"}),
            "high",
            "context_length",
        ),
        (json!({"code": "E1234"}), "high", "unknown"),
        (json!({}), "high", "unknown"),
        (json!({"code": "RATE_LIMIT"}), "medium", "rate_limit"),
        (json!({"code": 429}), "medium", "rate_limit"),
        (json!({"code": "llm_timeout"}), "medium", "timeout"),
        (json!({"code": "timeout_5000"}), "medium", "timeout"),
        (json!({"code": "connection_reset"}), "medium", "network"),
        (json!({"code": "TOOL_FAILED"}), "medium", "tool"),
        (json!({"code": "invalid_argument"}), "low", "validation"),
        // An explicit, configured category wins over the code.
        (
            json!({"code": "llm_timeout", "category": "auth"}),
            "high",
            "auth",
        ),
        // An unconfigured category is matched as text.
        (
            json!({"code": "E9", "category": "Upstream Timeout"}),
            "medium",
            "timeout",
        ),
    ];
    for (data, severity, category) in cases {
        let m = error_meta(&hub, &mut conn, &u, data.clone());
        assert_eq!(
            (m["severity"].as_str(), m["category"].as_str()),
            (Some(severity), Some(category)),
            "{data}: {m}"
        );
    }
}

#[test]
fn each_category_has_a_user_facing_message_and_recovery_suggestions() {
    let (hub, u, mut conn) = setup(one_shard());
    let m = error_meta(
        &hub,
        &mut conn,
        &u,
        json!({"code": "rate_limit", "message": "429 from upstream"}),
    );
    assert_eq!(m["message"], "The agent reached a usage limit.");
    assert_eq!(
        m["recovery_suggestions"],
        json!([
            "Wait a minute and try again",
            "Upgrade your plan for higher limits"
        ])
    );
    let m = error_meta(&hub, &mut conn, &u, json!({"code": "unauthorized"}));
    assert_eq!(
        m["message"],
        "The agent is not allowed to use a service it needs."
    );
    assert_eq!(m["recovery_suggestions"][0], "Sign in again");
    // Every default category: a message and at least two suggestions.
    for code in [
        "internal",
        "auth",
        "context_length",
        "x",
        "quota",
        "timeout",
        "network",
        "tool",
        "invalid",
    ] {
        let m = error_meta(&hub, &mut conn, &u, json!({ "code": code }));
        assert!(
            m["message"].as_str().is_some_and(|s| !s.is_empty()),
            "{code}: {m}"
        );
        assert!(
            m["recovery_suggestions"]
                .as_array()
                .is_some_and(|a| a.len() >= 2),
            "{code}: {m}"
        );
    }
}

#[test]
fn the_typed_emitter_sends_the_fields_the_classifier_reads() {
    let (hub, u, mut conn) = setup(one_shard());
    let run = hub.emitter(u, "r");
    run.started("a", None).unwrap().wait().unwrap();
    run.error("LLM_TIMEOUT", "the model did not answer")
        .unwrap()
        .wait()
        .unwrap();
    run.error_detail("E7", Some("validation"), "bad \"input\"", Some(true))
        .unwrap()
        .wait()
        .unwrap();
    let got = drain(&mut conn);
    assert_eq!(
        got[1]["data"],
        json!({"code": "LLM_TIMEOUT", "message": "the model did not answer"})
    );
    assert_eq!(
        (
            got[1]["meta"]["severity"].as_str(),
            got[1]["meta"]["fatal"].as_bool()
        ),
        (Some("medium"), Some(false))
    );
    assert_eq!(
        got[2]["data"],
        json!({"code": "E7", "category": "validation", "message": "bad \"input\"", "fatal": true})
    );
    assert_eq!(
        (
            got[2]["meta"]["severity"].as_str(),
            got[2]["meta"]["fatal"].as_bool()
        ),
        (Some("low"), Some(true))
    );
}

#[test]
fn rules_messages_and_suggestions_are_configurable() {
    let mut cfg = one_shard();
    let e = &mut cfg.enrichment;
    e.error_patterns
        .insert(0, ("billing".into(), "payment".into()));
    e.error_categories.insert(
        "payment".into(),
        ErrorCategory::new(
            Severity::Critical,
            "Your payment failed.",
            ["Update your card"],
        ),
    );
    e.error_categories.insert(
        "unknown".into(),
        ErrorCategory::new(Severity::Low, "Something odd happened.", ["Shrug"]),
    );
    e.closing_severity = Severity::Critical;
    let (hub, u, mut conn) = setup(cfg);
    let m = error_meta(&hub, &mut conn, &u, json!({"code": "BILLING_DECLINED"}));
    assert_eq!(
        m,
        json!({
            "elapsed_ms": m["elapsed_ms"],
            "severity": "critical",
            "category": "payment",
            "message": "Your payment failed.",
            "recovery_suggestions": ["Update your card"],
            "fatal": true
        })
    );
    let m = error_meta(&hub, &mut conn, &u, json!({"code": "E1"}));
    assert_eq!(
        (m["severity"].as_str(), m["message"].as_str()),
        (Some("low"), Some("Something odd happened."))
    );
    // auth is high: below the configured closing severity.
    let m = error_meta(&hub, &mut conn, &u, json!({"code": "auth"}));
    assert_eq!(m["fatal"], false);
}

#[test]
fn channel_and_broadcast_events_get_the_stateless_members_only() {
    let (hub, u, mut conn) = setup(one_shard());
    let ch = ChannelName::new("job:1").unwrap();
    conn.subscribe(ch.clone()).wait().unwrap().unwrap();
    // A run started for the user does not make channel events of that run tracked.
    hub.publish(Target::User(u), event(EventKind::AgentStarted, "r", "{}"))
        .unwrap()
        .wait()
        .unwrap();
    drain(&mut conn);
    let mut publish = |target: Target, kind: EventKind, data: &str| {
        hub.publish(target, event(kind, "r", data))
            .unwrap()
            .wait()
            .unwrap();
        let mut got = drain(&mut conn);
        assert_eq!(got.len(), 1);
        got.remove(0)
    };
    let e = publish(
        Target::Channel(ch.clone()),
        EventKind::ToolExecuting,
        r#"{"tool":"web_search"}"#,
    );
    assert_eq!(e["channel"], "job:1");
    assert_eq!(
        e["meta"],
        json!({"category": "search", "purpose": "Searching the web"})
    );
    let e = publish(
        Target::Broadcast,
        EventKind::AgentError,
        r#"{"code":"quota"}"#,
    );
    assert_eq!(e["meta"]["severity"], "medium");
    assert_eq!(e["meta"]["fatal"], false);
    assert!(e["meta"].get("elapsed_ms").is_none());
    let e = publish(
        Target::Channel(ch.clone()),
        EventKind::AgentThinking,
        r#"{"progress":50}"#,
    );
    assert_eq!(e["meta"], json!({"progress": {"percent": 50}}));
    let e = publish(Target::Channel(ch), EventKind::AgentCompleted, "{}");
    assert!(e.get("meta").is_none(), "nothing to add: {e}");
    hub.sync_blocking(false).unwrap();
    let s = hub.stats().total;
    assert_eq!(
        (s.lifecycle_violations, s.runs_finished),
        (0, 0),
        "channel events never touch runs"
    );
}
