//! AG-UI → native → AG-UI is the identity for every lossless kind of `docs/ag-ui.md`.
//!
//! For each of the 31 AG-UI 1.0 types, a valid event with arbitrary strings (quotes, escapes,
//! control characters, non-ASCII) and, for the kinds carried whole, arbitrary extra members
//! (`timestamp`, `rawEvent`, `metadata`, a publisher's own) is published through
//! [`PublishRequest::parse`], encoded as the engine encodes a user event, and translated back
//! with [`to_ag_ui`]. The result must be the event plus `seq`: byte for byte (with `,"seq":N`
//! before the closing brace) for the kinds carried whole, as a JSON value for the three
//! streamed kinds (`TEXT_MESSAGE_CONTENT`, `TOOL_CALL_ARGS`, `REASONING_MESSAGE_CONTENT`),
//! whose lossless members are the type, the id and the delta.

use agentcast_engine::PublishRequest;
use agentcast_engine::ag_ui::{AgUiType, to_ag_ui};
use agentcast_engine::frame::{EventFields, Origin, encode_event};
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The three kinds that keep only their id and delta.
fn streamed(t: AgUiType) -> bool {
    matches!(
        t,
        AgUiType::TextMessageContent | AgUiType::ToolCallArgs | AgUiType::ReasoningMessageContent
    )
}

/// A valid event of type `t`: its required members, strings from `s`.
fn event(t: AgUiType, s: &[String]) -> Map<String, Value> {
    let id = |i: usize| Value::String(s[i].clone());
    let mut m = Map::new();
    m.insert("type".into(), json!(t.as_str()));
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    use AgUiType as T;
    match t {
        T::TextMessageStart => {
            put("messageId", id(0));
            put("role", json!("user"));
            put("name", id(1));
        }
        T::TextMessageContent | T::ReasoningMessageContent => {
            put("messageId", id(0));
            put("delta", id(1));
        }
        T::TextMessageEnd | T::ReasoningStart | T::ReasoningMessageEnd | T::ReasoningEnd => {
            put("messageId", id(0))
        }
        T::TextMessageChunk | T::ReasoningMessageChunk => {
            put("messageId", id(0));
            put("delta", id(1));
        }
        T::ToolCallStart => {
            put("toolCallId", id(0));
            put("toolCallName", id(1));
            put("parentMessageId", id(2));
        }
        T::ToolCallArgs => {
            put("toolCallId", id(0));
            put("delta", id(1));
        }
        T::ToolCallEnd => put("toolCallId", id(0)),
        T::ToolCallChunk => put("delta", id(1)),
        T::ToolCallResult => {
            put("messageId", id(0));
            put("toolCallId", id(1));
            put("content", id(2));
            put("role", json!("tool"));
        }
        T::StateSnapshot => put("snapshot", json!({"k": id(0), "n": [1, 2.5, null]})),
        T::StateDelta => put(
            "delta",
            json!([{"op": "add", "path": "/a", "value": id(0)}]),
        ),
        T::MessagesSnapshot => put("messages", json!([])),
        T::ActivitySnapshot => {
            put("messageId", id(0));
            put("activityType", id(1));
            put("content", json!({"v": id(2)}));
            put("replace", json!(false));
        }
        T::ActivityDelta => {
            put("messageId", id(0));
            put("activityType", id(1));
            put("patch", json!([]));
        }
        T::Raw => {
            put("event", json!({"e": id(0)}));
            put("source", id(1));
        }
        T::Custom => {
            put("name", id(0));
            put("value", json!([id(1)]));
        }
        T::RunStarted | T::RunFinished => {
            put("threadId", id(0));
            put("runId", id(1));
        }
        T::RunError => {
            put("message", id(0));
            put("code", id(1));
        }
        T::StepStarted | T::StepFinished => put("stepName", id(0)),
        T::ReasoningMessageStart => {
            put("messageId", id(0));
            put("role", json!("reasoning"));
        }
        T::ReasoningEncryptedValue => {
            put("subtype", json!("tool-call"));
            put("entityId", id(0));
            put("encryptedValue", id(1));
        }
        T::SubagentStarted => {
            put("subagentRunId", id(0));
            put("name", id(1));
            put("parentToolCallId", id(2));
        }
        T::SubagentFinished => {
            put("subagentRunId", id(0));
            put("result", json!({"r": id(1)}));
        }
        T::SubagentError => {
            put("subagentRunId", id(0));
            put("message", id(1));
        }
    }
    m
}

/// Ids and texts: any characters, 1 to 40 of them, not taking the reserved `ag_ui.` prefix.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..40)
        .prop_map(|c| c.into_iter().collect::<String>())
        .prop_filter("reserved prefix", |s| !s.starts_with("ag_ui."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ag_ui_to_native_to_ag_ui_is_the_identity(
        which in 0..AgUiType::ALL.len(),
        strings in prop::collection::vec(text(), 3),
        extras in prop::option::of((any::<u32>(), text())),
        seq in 1u64..(1 << 53),
    ) {
        let t = AgUiType::ALL[which];
        let mut obj = event(t, &strings);
        if let (false, Some((ts, own))) = (streamed(t), extras) {
            obj.insert("timestamp".into(), json!(ts));
            obj.insert("rawEvent".into(), json!({"from": own}));
            obj.insert("metadata".into(), json!({"ag-ui": {"k": 1}}));
            obj.insert("publisher_own".into(), json!(own));
        }
        let raw = serde_json::to_string(&Value::Object(obj.clone())).unwrap();
        let body = format!(r#"{{"user_id":"u1","run_id":"r","ag_ui":{raw}}}"#);
        let req = PublishRequest::parse(&Bytes::from(body)).unwrap();
        let run_id = req.event.run_id.as_deref();
        let frame = encode_event(&EventFields {
            kind: &req.event.kind,
            origin: Origin::User { seq },
            run_id,
            ts_ms: 1_800_000_000_000,
            priority: req.event.priority.unwrap_or_else(|| req.event.kind.default_priority()),
            data: req.event.data.as_bytes(),
            extra: None,
        });
        let out = to_ag_ui(frame.payload());
        let got: Value = serde_json::from_slice(&out).unwrap();
        let mut want = obj;
        want.insert("seq".into(), json!(seq));
        prop_assert_eq!(got, Value::Object(want));
        if !streamed(t) {
            let bytes = format!("{},\"seq\":{seq}}}", &raw[..raw.len() - 1]);
            prop_assert_eq!(String::from_utf8(out).unwrap(), bytes);
        }
    }
}
