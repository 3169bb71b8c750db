//! What AG-UI costs per event, in and out (docs/ag-ui.md, "Cost").
//!
//! `ag_ui/out/*`: [`to_ag_ui`] on one frame payload as the engine encodes it, the work a
//! `?protocol=ag-ui` connection does per frame in its write path. Native connections write the
//! shared frame untouched (no per-connection work), so the baseline `ag_ui/out/copy_*` is a
//! copy of the same payload into a fresh buffer: what any per-connection rewrite costs at the
//! least. Kinds: a native `agent_started` (rule 4: `RUN_STARTED` with the native event in
//! `rawEvent`), a native `tool_executing` (rule 5: `CUSTOM`), an AG-UI-published
//! `TOOL_CALL_START` (rule 3: the object byte for byte plus `seq`), and a `message_delta`
//! (rule 2: `TEXT_MESSAGE_CONTENT`).
//!
//! `ag_ui/in/*`: [`AgUiEvent::parse`] then [`to_native`] on one AG-UI event as a publisher
//! sends it (the `ag_ui` member of the envelope): validation and mapping per publish.
//!
//! Run: `cargo bench -p agentcast-benches --bench ag_ui`.

use std::hint::black_box;

use agentcast_engine::ag_ui::{AgUiEvent, to_ag_ui, to_native};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Frame payloads in the engine's wire format (`frame::encode_event`'s member order).
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let note = "x".repeat(80);
    vec![
        (
            "agent_started",
            format!(
                r#"{{"type":"agent_started","seq":1796347287275001,"run_id":"trip-42","ts":"2026-12-04T01:21:27.471Z","priority":"critical","meta":{{"elapsed_ms":0}},"data":{{"agent":"planner","goal":"Plan a three-day trip to Lisbon","note":"{note}"}}}}"#
            )
            .into_bytes(),
        ),
        (
            "tool_executing",
            format!(
                r#"{{"type":"tool_executing","seq":1796347287275003,"run_id":"trip-42","ts":"2026-12-04T01:21:27.508Z","priority":"critical","meta":{{"elapsed_ms":37,"estimated_ms":412}},"data":{{"tool":"search_flights","args":{{"from":"BER","to":"LIS"}},"note":"{note}"}}}}"#
            )
            .into_bytes(),
        ),
        (
            "ag_ui_tool_call_start",
            format!(
                r#"{{"type":"tool_executing","seq":1796347287275004,"run_id":"r1","ts":"2026-12-04T01:21:27.510Z","priority":"critical","meta":{{"elapsed_ms":39}},"data":{{"tool":"search","call_id":"c1","ag_ui":{{"type":"TOOL_CALL_START","toolCallId":"c1","toolCallName":"search","parentMessageId":"m1","note":"{note}"}}}}}}"#
            )
            .into_bytes(),
        ),
        (
            "message_delta",
            br#"{"type":"message_delta","seq":1796347287275006,"run_id":"r1","ts":"2026-12-04T01:21:27.520Z","priority":"normal","data":{"message_id":"m1","delta":"Three days: Alfama, "}}"#
                .to_vec(),
        ),
    ]
}

/// AG-UI events as a publisher sends them (the envelope's `ag_ui` member).
fn events() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "run_started",
            br#"{"type":"RUN_STARTED","threadId":"thread-7","runId":"run-42"}"#.to_vec(),
        ),
        (
            "text_message_content",
            br#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":"Three days: Alfama, "}"#
                .to_vec(),
        ),
        (
            "tool_call_start",
            br#"{"type":"TOOL_CALL_START","toolCallId":"c1","toolCallName":"search_flights","parentMessageId":"m1"}"#
                .to_vec(),
        ),
        (
            "state_delta",
            br#"{"type":"STATE_DELTA","delta":[{"op":"replace","path":"/step","value":3},{"op":"add","path":"/items/-","value":{"id":7,"title":"Belem"}}]}"#
                .to_vec(),
        ),
    ]
}

fn out(c: &mut Criterion) {
    let mut g = c.benchmark_group("ag_ui/out");
    for (name, payload) in frames() {
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter(|| black_box(to_ag_ui(black_box(&payload))))
        });
        g.bench_function(format!("copy_{name}"), |b| {
            b.iter(|| black_box(black_box(payload.as_slice()).to_vec()))
        });
    }
    g.finish();
}

fn inbound(c: &mut Criterion) {
    let mut g = c.benchmark_group("ag_ui/in");
    for (name, raw) in events() {
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter(|| {
                let ev = AgUiEvent::parse(black_box(&raw)).expect("valid AG-UI event");
                black_box(to_native(&ev, None).expect("maps"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, out, inbound);
criterion_main!(benches);
