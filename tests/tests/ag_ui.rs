//! AG-UI in and out (`docs/ag-ui.md`), end to end against a real server:
//!
//! - `tests/node/ag_ui_stream.mjs` publishes a realistic AG-UI run through the single, batch
//!   and streaming publish endpoints and checks what `?protocol=ag-ui` delivers over
//!   WebSocket and SSE with the official `@ag-ui/core` schemas and `@ag-ui/client`'s
//!   `verifyEvents`, across a disconnect mid-message and a resume (`last_seq`,
//!   `Last-Event-ID`). Needs Node.js >= 20 and `npm ci --prefix tests/browser`.
//! - `tests/node/ag_ui_agent.mjs`: `web/ag-ui-agent.js` (`AgentcastAgent`, an
//!   `@ag-ui/client` `AbstractAgent`) reopens a dropped socket with `last_seq`, and
//!   `connectAgent()` resolves with the run's message, tool call, state and result exact.
//! - `tests/node/ag_ui_schemas_agree.mjs`: the publish API accepts a candidate AG-UI event
//!   exactly when `@ag-ui/core`'s `EventSchemas` does (valid events of every type and near
//!   misses).
//! - `tests/py/ag_ui_publish.py` builds a run with the official Python `ag-ui-protocol`
//!   models and `EventEncoder` and publishes it through the streaming publish connection;
//!   the AG-UI SSE stream gives each event back as the encoder wrote it, plus `seq`. Needs
//!   `pip install ag-ui-protocol==1.0.0 httpx`.
//! - A malformed AG-UI event is answered 400 naming its field, on each publish endpoint, and
//!   changes nothing.
//! - An unknown `?protocol=` is refused 400 naming it, on `/ws` and `/sse`.
//! - A native connection of the same user still receives native frames.

use agentcast_tests::{
    API_KEY, PyClient, SseClient, TestServer, open_stream, run_node_script, token,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ag_ui_run_passes_the_official_schemas_and_verifier_over_ws_and_sse_across_a_resume() {
    let server = TestServer::start().await;
    run_node_script(&server, "ag_ui_stream.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agentcast_agent_adapter_resumes_a_dropped_socket_and_assembles_the_run() {
    let server = TestServer::start().await;
    run_node_script(&server, "ag_ui_agent.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_validation_agrees_with_the_official_event_schemas() {
    let server = TestServer::start().await;
    run_node_script(&server, "ag_ui_schemas_agree.mjs").await;
}

/// Each malformed event, and the field its 400 must name.
fn malformed() -> Vec<(Value, &'static str)> {
    vec![
        (
            json!({"type": "TEXT_MESSAGE_CONTENT", "delta": "x"}),
            "ag_ui.messageId",
        ),
        (
            json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": 5}),
            "ag_ui.delta",
        ),
        (
            json!({"type": "TOOL_CALL_START", "toolCallId": "c"}),
            "ag_ui.toolCallName",
        ),
        (
            json!({"type": "RUN_STARTED", "runId": "r"}),
            "ag_ui.threadId",
        ),
        (
            json!({"type": "RUN_STARTED", "threadId": "t", "runId": ""}),
            "ag_ui.runId",
        ),
        (
            json!({"type": "STATE_DELTA", "delta": {"op": "add"}}),
            "ag_ui.delta",
        ),
        (
            json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "tool"}),
            "ag_ui.role",
        ),
        (
            json!({"type": "TEXT_MESSAGE_BEGIN", "messageId": "m"}),
            "TEXT_MESSAGE_BEGIN",
        ),
        (json!({"messageId": "m"}), "ag_ui.type"),
        (
            json!({"type": "RUN_ERROR", "message": "x", "seq": 1}),
            "ag_ui.seq",
        ),
        (json!("TEXT_MESSAGE_END"), "ag_ui"),
        (
            json!({"type": "CUSTOM", "name": "agentcast.gap", "value": {"from": 1, "to": 9}}),
            "ag_ui.name",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_ag_ui_event_is_refused_naming_its_field_on_every_publish_endpoint() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u1")).await;
    let cases = malformed();
    for (ev, field) in &cases {
        let (status, body) = server.publish(&json!({"user_id": "u1", "ag_ui": ev})).await;
        assert_eq!(status, 400, "{ev} → {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{ev}: `{msg}` does not name {field}");
    }
    let clash =
        json!({"user_id": "u1", "type": "x", "ag_ui": {"type": "RUN_ERROR", "message": "m"}});
    let (status, body) = server.publish(&clash).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("ag_ui"),
        "{body}"
    );

    let forged = json!({"user_id": "u1", "type": "agentcast.welcome", "run_id": "r"});
    let (status, body) = server.publish(&forged).await;
    assert_eq!(
        status, 400,
        "a native type may not take an agentcast.* name: {body}"
    );
    assert!(
        body["error"].as_str().unwrap_or_default().contains("type"),
        "{body}"
    );

    let items: Vec<Value> = cases
        .iter()
        .map(|(ev, _)| json!({"user_id": "u1", "ag_ui": ev}))
        .collect();
    for (answer, (ev, field)) in server.publish_batch(&items).await.iter().zip(&cases) {
        let msg = answer["error"].to_string();
        assert!(
            msg.contains(field),
            "batch {ev}: {answer} does not name {field}"
        );
    }

    let mut body = String::new();
    for (ev, _) in &cases {
        body.push_str(&json!({"user_id": "u1", "ag_ui": ev}).to_string());
        body.push('\n');
    }
    let (mut w, mut r) = open_stream(
        server.addr,
        Some(API_KEY),
        "/api/v1/publish/stream",
        body.as_bytes(),
    )
    .await;
    for (i, (ev, field)) in cases.iter().enumerate() {
        let line = r.expect_line().await;
        assert_eq!(line["line"], i + 1, "{line}");
        assert_eq!(line["error"]["status"], 400, "{line}");
        assert!(
            line["error"]["message"].to_string().contains(field),
            "stream {ev}: {line}"
        );
    }
    w.finish().await;

    // Nothing was published: the next event the connection sees is this one.
    let (status, _) = server
        .publish(&json!({"user_id": "u1", "ag_ui": {"type": "RUN_ERROR", "message": "last"}}))
        .await;
    assert_eq!(status, 200);
    let ev = c.next_json().await;
    assert_eq!(ev["type"], "agent_error", "{ev}");
    assert_eq!(ev["data"]["message"], "last", "{ev}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_protocol_is_refused_naming_it_on_ws_and_sse() {
    let server = TestServer::start().await;
    let t = token("u1");
    let (status, body) = server.refused(&format!("token={t}&protocol=ag_ui")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`ag_ui`"),
        "{body}"
    );
    let Err(refused) =
        SseClient::open(&server, &format!("/sse?token={t}&protocol=agui"), &[]).await
    else {
        panic!("an unknown protocol must be refused");
    };
    assert_eq!(refused.0, 400, "{:?}", refused.1);
    assert!(
        refused.1["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`agui`"),
        "{:?}",
        refused.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_ag_ui_connections_of_one_user_each_get_their_own_format() {
    let server = TestServer::start().await;
    let t = token("u1");
    let mut native = server.connect(&t).await;
    let mut agui = SseClient::open(&server, &format!("/sse?token={t}&protocol=ag-ui"), &[])
        .await
        .expect("ag-ui stream");
    let (_, _, welcome) = agui.next_json().await;
    assert_eq!(welcome["type"], "CUSTOM", "{welcome}");
    assert_eq!(welcome["name"], "agentcast.welcome", "{welcome}");
    assert_eq!(welcome["value"]["user_id"], "u1", "{welcome}");
    let ev = json!({"type": "TEXT_MESSAGE_START", "messageId": "m1", "role": "assistant"});
    let (status, receipt) = server.publish(&json!({"user_id": "u1", "ag_ui": ev})).await;
    assert_eq!(status, 200, "{receipt}");
    let n = native.next_json().await;
    assert_eq!(n["type"], "message_started", "{n}");
    assert_eq!(n["data"]["message_id"], "m1", "{n}");
    assert_eq!(n["data"]["ag_ui"], ev, "{n}");
    let (id, event, a) = agui.next_json().await;
    let mut want = ev.clone();
    want["seq"] = receipt["seq"].clone();
    assert_eq!(a, want);
    assert_eq!(id, Some(receipt["seq"].to_string()));
    assert_eq!(event, None, "AG-UI mode writes no `event:` line");
}

/// The official Python models and encoder (`tests/py/ag_ui_publish.py`, as an agent
/// framework's adapter would produce the events) through the streaming publish connection:
/// an AG-UI SSE stream gives back each event the encoder wrote, byte for byte plus its
/// `seq` (by value for the streamed text and arguments), with `id:` = the receipt's seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_the_official_python_encoder_come_back_as_encoded() {
    let server = TestServer::start().await;
    let t = token("py-agui");
    let mut sse = SseClient::open(&server, &format!("/sse?token={t}&protocol=ag-ui"), &[])
        .await
        .expect("ag-ui stream");
    let (_, _, welcome) = sse.next_json().await;
    assert_eq!(welcome["name"], "agentcast.welcome", "{welcome}");
    let base = format!("http://{}", server.addr);
    let mut py = PyClient::spawn(
        "ag_ui_publish.py",
        &[&base, API_KEY, "py-agui"],
        "ag-ui-protocol==1.0.0",
    );
    let mut sent = Vec::new();
    let mut seqs = Vec::new();
    loop {
        let line = py.next_line().await.expect("a line from ag_ui_publish.py");
        if let Some(json) = line.strip_prefix("SENT ") {
            sent.push(json.to_owned());
        } else if let Some(seq) = line.strip_prefix("RECEIPT ") {
            seqs.push(seq.parse::<u64>().expect("seq"));
        } else if line == "DONE" {
            break;
        } else {
            panic!("ag_ui_publish.py: {line} (needs `pip install ag-ui-protocol==1.0.0 httpx`)");
        }
    }
    assert!(py.wait_success().await);
    assert_eq!(sent.len(), 14, "{sent:?}");
    assert_eq!(seqs.len(), sent.len(), "one receipt per line: {seqs:?}");
    for (raw, seq) in sent.iter().zip(&seqs) {
        let (id, event, data) = sse.next_event().await;
        assert_eq!(id, Some(seq.to_string()), "{data}");
        assert_eq!(event, None);
        let original: Value = serde_json::from_str(raw).expect("encoder JSON");
        let streamed = matches!(
            original["type"].as_str(),
            Some("TEXT_MESSAGE_CONTENT" | "TOOL_CALL_ARGS")
        );
        if streamed {
            let mut want = original.clone();
            want["seq"] = json!(seq);
            assert_eq!(serde_json::from_str::<Value>(&data).expect("JSON"), want);
        } else {
            assert_eq!(data, format!("{},\"seq\":{seq}}}", &raw[..raw.len() - 1]));
        }
    }
}

/// AG-UI runs are tracked like native runs: `RUN_STARTED` opens one, `RUN_FINISHED` (and a
/// `RUN_ERROR` given the run's `run_id` in the envelope) closes it, in `/api/v1/stats`; and
/// the native view of a run carries the enrichment (`meta`) of a native one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ag_ui_runs_appear_in_the_run_statistics_like_native_runs() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u1")).await;
    let events = [
        json!({"user_id": "u1", "ag_ui": {"type": "RUN_STARTED", "threadId": "t", "runId": "r1"}}),
        json!({"user_id": "u1", "run_id": "r1", "ag_ui": {"type": "TOOL_CALL_START", "toolCallId": "c1", "toolCallName": "search"}}),
        json!({"user_id": "u1", "ag_ui": {"type": "RUN_FINISHED", "threadId": "t", "runId": "r1"}}),
        json!({"user_id": "u1", "ag_ui": {"type": "RUN_STARTED", "threadId": "t", "runId": "r2"}}),
        json!({"user_id": "u1", "run_id": "r2", "ag_ui": {"type": "RUN_ERROR", "message": "boom"}}),
    ];
    for ev in &events {
        let (status, body) = server.publish(ev).await;
        assert_eq!(status, 200, "{ev}: {body}");
    }
    let frames = c.take(events.len()).await;
    assert_eq!(frames[0]["type"], "agent_started");
    assert_eq!(frames[1]["type"], "tool_executing");
    assert_eq!(frames[1]["data"]["tool"], "search", "{}", frames[1]);
    assert!(
        frames[1]["meta"].is_object(),
        "tool events of a run are enriched: {}",
        frames[1]
    );
    assert_eq!(frames[4]["type"], "agent_error");
    assert_eq!(frames[4]["run_id"], "r2");
    let (_, body) = server.http("GET", "/api/v1/stats", None, b"").await;
    let stats: Value = serde_json::from_str(&body).expect("stats JSON");
    let find = |key: &str| -> Value {
        fn walk(v: &Value, key: &str) -> Option<Value> {
            match v {
                Value::Object(m) => m
                    .get(key)
                    .cloned()
                    .or_else(|| m.values().find_map(|x| walk(x, key))),
                _ => None,
            }
        }
        walk(&stats, key).unwrap_or(Value::Null)
    };
    assert_eq!(find("runs_started"), json!(2), "{stats}");
    assert_eq!(find("runs_finished"), json!(2), "{stats}");
    assert_eq!(find("lifecycle_violations"), json!(0), "{stats}");
}
