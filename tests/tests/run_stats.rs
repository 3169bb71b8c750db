//! Run statistics through the public surface: a native run and the same run published as
//! AG-UI events give the same counters in `/api/v1/stats` (runs started, finished, errored,
//! their total duration, tool calls started and completed) and in `/metrics`, with no
//! lifecycle violation.

use std::time::Duration;

use agentcast_tests::{TestServer, WAIT, token};
use serde_json::{Value, json};

/// The pause inside each run, so its duration is at least this long.
const PAUSE: Duration = Duration::from_millis(40);

/// Two runs of user `u`: `ok` (one tool call, completed) and `bad` (one tool call, then a
/// closing error). Each inner list is published as it is, then the test pauses.
fn native(u: &str) -> Vec<Vec<Value>> {
    let ev = |ty: &str, run: &str, data: Value| json!({"user_id": u, "type": ty, "run_id": run, "data": data});
    vec![
        vec![
            ev("agent_started", "ok", json!({})),
            ev(
                "tool_executing",
                "ok",
                json!({"tool": "search", "call_id": "c1"}),
            ),
        ],
        vec![
            ev(
                "tool_completed",
                "ok",
                json!({"tool": "search", "call_id": "c1"}),
            ),
            ev("agent_completed", "ok", json!({})),
            ev("agent_started", "bad", json!({})),
            ev(
                "tool_executing",
                "bad",
                json!({"tool": "fetch", "call_id": "c2"}),
            ),
        ],
        vec![
            ev(
                "tool_completed",
                "bad",
                json!({"tool": "fetch", "call_id": "c2"}),
            ),
            ev(
                "agent_error",
                "bad",
                json!({"code": "internal", "fatal": true}),
            ),
        ],
    ]
}

/// The same two runs as AG-UI events: tool calls stream their arguments and end with
/// `TOOL_CALL_END` then `TOOL_CALL_RESULT` (neither names the tool), and the error is a
/// `RUN_ERROR` whose envelope gives the run.
fn ag_ui(u: &str) -> Vec<Vec<Value>> {
    let ev = |run: Option<&str>, a: Value| match run {
        Some(r) => json!({"user_id": u, "run_id": r, "ag_ui": a}),
        None => json!({"user_id": u, "ag_ui": a}),
    };
    let call = |run: &str, id: &str, name: &str| {
        vec![
            ev(
                Some(run),
                json!({"type": "TOOL_CALL_START", "toolCallId": id, "toolCallName": name}),
            ),
            ev(
                Some(run),
                json!({"type": "TOOL_CALL_ARGS", "toolCallId": id, "delta": "{\"q\":1}"}),
            ),
        ]
    };
    let end = |run: &str, id: &str| {
        vec![
            ev(
                Some(run),
                json!({"type": "TOOL_CALL_END", "toolCallId": id}),
            ),
            ev(
                Some(run),
                json!({"type": "TOOL_CALL_RESULT", "messageId": format!("m-{id}"), "toolCallId": id, "content": "done"}),
            ),
        ]
    };
    let started = |run: &str| {
        ev(
            None,
            json!({"type": "RUN_STARTED", "threadId": "t", "runId": run}),
        )
    };
    let mut first = vec![started("ok")];
    first.extend(call("ok", "c1", "search"));
    let mut second = end("ok", "c1");
    second.push(ev(
        None,
        json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "ok"}),
    ));
    second.push(started("bad"));
    second.extend(call("bad", "c2", "fetch"));
    let mut third = end("bad", "c2");
    third.push(ev(
        Some("bad"),
        json!({"type": "RUN_ERROR", "message": "boom", "code": "internal"}),
    ));
    vec![first, second, third]
}

/// Publishes the steps with a pause between them, reads every frame on a connection of the
/// user, and returns the engine section of the stats once they count every event.
async fn run(steps: Vec<Vec<Value>>) -> (TestServer, Value) {
    let server = TestServer::start_with(|c| c.health.canary = false).await;
    let mut c = server.connect(&token("u")).await;
    let mut count = 0;
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        for ev in step {
            let (status, body) = server.publish(ev).await;
            assert_eq!(status, 200, "{ev}: {body}");
            count += 1;
        }
    }
    let frames = c.take(count).await;
    for f in &frames {
        assert!(
            f["meta"].get("lifecycle").is_none(),
            "no lifecycle flag: {f}"
        );
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, text) = server.http("GET", "/api/v1/stats", None, b"").await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("stats JSON");
        let e = v["engine"].clone();
        if e["published_user"].as_u64() >= Some(count as u64)
            || tokio::time::Instant::now() > deadline
        {
            return (server, e);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn check(e: &Value, what: &str) {
    let n = |f: &str| {
        e[f].as_u64()
            .unwrap_or_else(|| panic!("{what}: `{f}` missing from {e}"))
    };
    assert_eq!(n("runs_started"), 2, "{what}: {e}");
    assert_eq!(n("runs_finished"), 2, "{what}: {e}");
    assert_eq!(n("runs_errored"), 1, "{what}: {e}");
    assert_eq!(n("tool_calls"), 2, "{what}: {e}");
    assert_eq!(n("tool_calls_completed"), 2, "{what}: {e}");
    assert_eq!(n("lifecycle_violations"), 0, "{what}: {e}");
    // Run `ok` spans one pause, run `bad` another (it starts in the second step).
    let total = n("run_duration_ms_total");
    assert!(
        total >= 2 * PAUSE.as_millis() as u64,
        "{what}: two runs of at least {PAUSE:?} each: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_run_and_the_same_ag_ui_run_count_the_same() {
    let (native_server, native_stats) = run(native("u")).await;
    check(&native_stats, "native");
    let (ag_server, ag_stats) = run(ag_ui("u")).await;
    check(&ag_stats, "AG-UI");
    // `/metrics` carries the same counters.
    for (server, what) in [(&native_server, "native"), (&ag_server, "AG-UI")] {
        let (status, text) = server.http("GET", "/metrics", None, b"").await;
        assert_eq!(status, 200, "{text}");
        for line in [
            "agentcast_engine_runs_started_total 2",
            "agentcast_engine_runs_finished_total 2",
            "agentcast_engine_runs_errored_total 1",
            "agentcast_engine_tool_calls_total 2",
            "agentcast_engine_tool_calls_completed_total 2",
            "agentcast_engine_lifecycle_violations_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{what}: `{line}` in /metrics:\n{text}"
            );
        }
    }
}

/// A tool call ended without its name (AG-UI) that is not running is left alone: not
/// counted as completed and not flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnamed_tool_end_of_no_running_call_is_neither_counted_nor_flagged() {
    let steps = vec![vec![
        json!({"user_id": "u", "ag_ui": {"type": "RUN_STARTED", "threadId": "t", "runId": "r"}}),
        json!({"user_id": "u", "run_id": "r", "ag_ui": {"type": "TOOL_CALL_END", "toolCallId": "nope"}}),
        json!({"user_id": "u", "ag_ui": {"type": "RUN_FINISHED", "threadId": "t", "runId": "r"}}),
    ]];
    let (_server, e) = run(steps).await;
    assert_eq!(e["runs_finished"], 1, "{e}");
    assert_eq!(e["tool_calls_completed"], 0, "{e}");
    assert_eq!(e["lifecycle_violations"], 0, "{e}");
}
