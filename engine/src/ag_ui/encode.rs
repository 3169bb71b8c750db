//! One engine frame's JSON → one AG-UI event object, for a `?protocol=ag-ui` connection.
//!
//! The input is the payload of a frame as the engine encodes it (an event, a merged delta, a
//! `gap`) or as the server writes it (`welcome`, `error`, `pong`, a close reason); the output
//! is one JSON object valid under `@ag-ui/core`'s `EventSchemas`, with `seq` (and `seq_from`
//! for a merged delta) added as extra members when the frame has them:
//!
//! 1. A server message (`welcome`, `gap`, `error`, `pong`, `close`) → `{"type":"CUSTOM",
//!    "name":"agentcast.<type>","value":<the message>}`.
//! 2. A `message_delta` → `TEXT_MESSAGE_CONTENT` (`messageId`, `delta`), or `TOOL_CALL_ARGS`
//!    (`toolCallId`) / `REASONING_MESSAGE_CONTENT` (`messageId`) when its `message_id` has the
//!    [`TOOL_CALL_PREFIX`] / [`REASONING_PREFIX`]. A merged delta is one such event with the
//!    concatenated `delta`.
//! 3. An event whose `data.ag_ui` is a valid AG-UI event (every AG-UI-published event but the
//!    streamed ones) → that object, byte for byte, plus `seq`.
//! 4. A native `agent_started` / `agent_completed` / `agent_error` → `RUN_STARTED` /
//!    `RUN_FINISHED` (`result` = `data` unless `null`, which 1.0 refuses) / `RUN_ERROR`; `message_started` / `message_completed` →
//!    `TEXT_MESSAGE_START` / `TEXT_MESSAGE_END`; each with the native event in `rawEvent`.
//! 5. Anything else (`agent_thinking`, `tool_executing`, `tool_completed`, custom types) →
//!    `{"type":"CUSTOM","name":"<native type>","value":<the native event>}`.
//!
//! Never fails: a frame that fits no rule (or is not JSON) becomes rule 5 with a `null`
//! value. Cost: one scan of the frame, one of its `data`, and one output buffer the size of
//! the frame plus a few dozen bytes (twice the frame for rule 4, which carries it in
//! `rawEvent`). Only AG-UI connections pay it.

use super::parse::AgUiEvent;
use super::{REASONING_PREFIX, TOOL_CALL_PREFIX};
use crate::json::Members;

/// The AG-UI event of one frame payload. See the [module docs](self). O(n).
pub fn to_ag_ui(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 64);
    let Ok(m) = Members::scan_validated(payload) else {
        custom(&mut out, b"agentcast.unreadable", b"null");
        return out;
    };
    let ty = m.raw("type").unwrap_or(b"null");
    let data = m.raw("data").and_then(|d| Members::scan_validated(d).ok());
    let body_end = match ty {
        b"\"welcome\"" | b"\"gap\"" | b"\"error\"" | b"\"pong\"" | b"\"close\"" => {
            let mut name = b"agentcast.".to_vec();
            name.extend_from_slice(&ty[1..ty.len() - 1]);
            custom(&mut out, &name, payload);
            return out;
        }
        b"\"message_delta\"" => {
            match (
                string(data.as_ref(), "message_id"),
                string(data.as_ref(), "delta"),
            ) {
                (Some(id), Some(delta)) => delta_event(&mut out, id, delta),
                _ => {
                    custom(&mut out, b"message_delta", payload);
                }
            }
            out.len() - 1
        }
        _ => match data.as_ref().and_then(|d| d.raw("ag_ui")) {
            Some(obj) if AgUiEvent::parse_validated(obj).is_ok() => {
                out.extend_from_slice(obj);
                match out.iter().rposition(|&b| b == b'}') {
                    Some(i) => i,
                    None => {
                        out.clear();
                        custom(&mut out, b"agentcast.unreadable", b"null");
                        return out;
                    }
                }
            }
            _ => {
                native(&mut out, ty, &m, &data, payload);
                out.len() - 1
            }
        },
    };
    out.truncate(body_end);
    for key in ["seq", "seq_from"] {
        if let Some(v) = m.raw(key) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(v);
        }
    }
    out.push(b'}');
    out
}

/// Rule 2: a delta, by its message id's prefix.
fn delta_event(out: &mut Vec<u8>, id: &[u8], delta: &[u8]) {
    let inner = &id[1..];
    let (ty, key, rest) = if let Some(rest) = inner.strip_prefix(TOOL_CALL_PREFIX.as_bytes()) {
        ("TOOL_CALL_ARGS", "toolCallId", rest)
    } else if let Some(rest) = inner.strip_prefix(REASONING_PREFIX.as_bytes()) {
        ("REASONING_MESSAGE_CONTENT", "messageId", rest)
    } else {
        ("TEXT_MESSAGE_CONTENT", "messageId", inner)
    };
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(rest);
    out.extend_from_slice(b",\"delta\":");
    out.extend_from_slice(delta);
    out.push(b'}');
}

/// Rules 4 and 5: a native event.
fn native(
    out: &mut Vec<u8>,
    ty: &[u8],
    m: &Members<'_>,
    data: &Option<Members<'_>>,
    payload: &[u8],
) {
    let d = data.as_ref();
    let run_id = string(Some(m), "run_id");
    let head = |out: &mut Vec<u8>, t: &str| {
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(t.as_bytes());
        out.push(b'"');
    };
    let member = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(value);
    };
    match (ty, run_id) {
        (b"\"agent_started\"" | b"\"agent_completed\"", Some(run)) => {
            let started = ty == b"\"agent_started\"";
            head(
                out,
                if started {
                    "RUN_STARTED"
                } else {
                    "RUN_FINISHED"
                },
            );
            member(out, "threadId", string(d, "thread_id").unwrap_or(run));
            member(out, "runId", run);
            if !started {
                if let Some(result) = m.raw("data").filter(|r| *r != b"null") {
                    member(out, "result", result);
                }
            }
        }
        (b"\"agent_error\"", _) => {
            head(out, "RUN_ERROR");
            let message = string(d, "message")
                .or_else(|| string(d, "error"))
                .unwrap_or(b"\"agent_error\"");
            member(out, "message", message);
            if let Some(code) = string(d, "code") {
                member(out, "code", code);
            }
        }
        (b"\"message_started\"" | b"\"message_completed\"", _)
            if string(d, "message_id").is_some() =>
        {
            let started = ty == b"\"message_started\"";
            head(
                out,
                if started {
                    "TEXT_MESSAGE_START"
                } else {
                    "TEXT_MESSAGE_END"
                },
            );
            member(out, "messageId", string(d, "message_id").unwrap_or(b"\"\""));
            if started {
                let role = d.and_then(|d| d.raw("role")).filter(|r| {
                    matches!(
                        *r,
                        b"\"developer\"" | b"\"system\"" | b"\"assistant\"" | b"\"user\""
                    )
                });
                member(out, "role", role.unwrap_or(b"\"assistant\""));
            }
        }
        _ => {
            let name = if ty.first() == Some(&b'"') && ty.len() >= 2 {
                &ty[1..ty.len() - 1]
            } else {
                b"unknown"
            };
            custom(out, name, payload);
            return;
        }
    }
    member(out, "rawEvent", payload);
    out.push(b'}');
}

/// The raw JSON of string member `key` of `members`, if it is a string.
fn string<'a>(members: Option<&Members<'a>>, key: &str) -> Option<&'a [u8]> {
    members
        .and_then(|d| d.raw(key))
        .filter(|r| r.first() == Some(&b'"'))
}

/// `{"type":"CUSTOM","name":"<name>","value":<value>}`; `name` is already JSON-escaped.
fn custom(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(b"{\"type\":\"CUSTOM\",\"name\":\"");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\",\"value\":");
    out.extend_from_slice(value);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        String::from_utf8(to_ag_ui(s.as_bytes())).unwrap()
    }

    #[test]
    fn a_merged_delta_is_one_content_event_with_both_seqs() {
        assert_eq!(
            enc(
                r#"{"type":"message_delta","seq":17,"run_id":"r","ts":"t","priority":"normal","seq_from":12,"data":{"message_id":"m1","delta":"Hello"}}"#
            ),
            r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":"Hello","seq":17,"seq_from":12}"#
        );
    }

    #[test]
    fn prefixed_deltas_become_tool_args_and_reasoning() {
        assert_eq!(
            enc(
                r#"{"type":"message_delta","seq":3,"data":{"message_id":"ag_ui.tool_call:c1","delta":"{}"}}"#
            ),
            r#"{"type":"TOOL_CALL_ARGS","toolCallId":"c1","delta":"{}","seq":3}"#
        );
        assert_eq!(
            enc(
                r#"{"type":"message_delta","seq":3,"data":{"message_id":"ag_ui.reasoning:r","delta":"x"}}"#
            ),
            r#"{"type":"REASONING_MESSAGE_CONTENT","messageId":"r","delta":"x","seq":3}"#
        );
    }

    #[test]
    fn an_ag_ui_object_in_data_comes_back_byte_for_byte() {
        assert_eq!(
            enc(
                r#"{"type":"ag_ui.STATE_DELTA","seq":9,"data":{"ag_ui":{"type":"STATE_DELTA","delta":[{"op":"add"}] }}}"#
            ),
            r#"{"type":"STATE_DELTA","delta":[{"op":"add"}] ,"seq":9}"#
        );
    }

    #[test]
    fn server_messages_are_agentcast_custom_events() {
        assert_eq!(
            enc(r#"{"type":"pong"}"#),
            r#"{"type":"CUSTOM","name":"agentcast.pong","value":{"type":"pong"}}"#
        );
    }

    #[test]
    fn native_lifecycle_maps_to_run_events() {
        let p = r#"{"type":"agent_started","seq":1,"run_id":"r1","data":{}}"#;
        assert_eq!(
            enc(p),
            format!(
                r#"{{"type":"RUN_STARTED","threadId":"r1","runId":"r1","rawEvent":{p},"seq":1}}"#
            )
        );
        let p = r#"{"type":"tool_executing","seq":2,"run_id":"r1","data":{}}"#;
        assert_eq!(
            enc(p),
            format!(r#"{{"type":"CUSTOM","name":"tool_executing","value":{p},"seq":2}}"#)
        );
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "",
            "[",
            "{\"type\":",
            "{\"type\":\"message_delta\",\"data\":5}",
            "{}",
        ] {
            let _ = to_ag_ui(s.as_bytes());
        }
    }
}
