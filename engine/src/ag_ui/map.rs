//! One AG-UI event → one native [`Event`]. The table (both directions) is in `docs/ag-ui.md`.
//!
//! | AG-UI | native kind | `run_id` | `data` | priority |
//! |---|---|---|---|---|
//! | `RUN_STARTED` / `RUN_FINISHED` | `agent_started` / `agent_completed` | `runId` | `thread_id`, `ag_ui` | critical |
//! | `RUN_ERROR` | `agent_error` | envelope `run_id`, else a string `runId` member, else none | `message`, `ag_ui` | critical |
//! | `TEXT_MESSAGE_START` / `_END` | `message_started` / `message_completed` | envelope | `message_id`, `role` (start), `ag_ui` | normal, never dropped |
//! | `TEXT_MESSAGE_CONTENT` | `message_delta` | envelope | `message_id`, `delta` | normal, merged, never dropped |
//! | `TOOL_CALL_ARGS` | `message_delta` | envelope | `message_id` = `ag_ui.tool_call:<toolCallId>`, `delta` | normal, merged, never dropped |
//! | `REASONING_MESSAGE_CONTENT` | `message_delta` | envelope | `message_id` = `ag_ui.reasoning:<messageId>`, `delta` | normal, merged, never dropped |
//! | `TOOL_CALL_START` | `tool_executing` | envelope | `tool` (`toolCallName`), `call_id` (`toolCallId`), `ag_ui` | critical |
//! | `TOOL_CALL_END` / `TOOL_CALL_RESULT` | `tool_completed` | envelope | `call_id`, `ag_ui` | critical |
//! | other `REASONING_*` | `agent_thinking` | envelope | `ag_ui` | critical (never coalesced) |
//! | everything else | custom `ag_ui.<TYPE>` | envelope | `ag_ui` | critical |
//!
//! `data.ag_ui` is the AG-UI object byte for byte, so [`to_ag_ui`](super::to_ag_ui) gives
//! it back unchanged. The three streamed kinds keep only their id and `delta` (that is what
//! merging keeps): their `timestamp`, `rawEvent`, `metadata` and unknown members are not
//! carried. Critical is what makes an event never dropped: a connection too slow for it is
//! closed (1013) and resumes. An envelope `priority` overrides the table.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::parse::{AgUiEvent, AgUiType};
use super::{REASONING_PREFIX, RESERVED_PREFIX, TOOL_CALL_PREFIX};
use crate::error::ParseError;
use crate::event::{Data, Event, EventKind, Priority};

/// The longest id (decoded bytes) that becomes a native `message_id`: room for the
/// 16-byte prefixes within the native 256.
pub const MAX_ID_BYTES: usize = 240;

/// Maps a validated AG-UI event to the native event it is published as. `run_id` is the
/// envelope's `run_id`, if any (AG-UI's message and tool events carry none of their own).
/// Refuses an id the native model cannot hold (see [`MAX_ID_BYTES`]), naming the member.
/// O(n) in the object's length: `data` is one new buffer.
pub fn to_native(ev: &AgUiEvent<'_>, run_id: Option<Arc<str>>) -> Result<Event, ParseError> {
    use AgUiType as T;
    let raw = ev.raw();
    let mut d = BytesMut::with_capacity(raw.len() + 64);
    d.put_u8(b'{');
    let mut first = true;
    let mut put = |d: &mut BytesMut, key: &str, value: &[u8]| {
        if !first {
            d.put_u8(b',');
        }
        first = false;
        d.put_u8(b'"');
        d.put_slice(key.as_bytes());
        d.put_slice(b"\":");
        d.put_slice(value);
    };
    let member = |key: &str| ev.member(key).unwrap_or(b"null");
    let (kind, priority, run_id) = match ev.ty() {
        T::RunStarted | T::RunFinished => {
            let run = ev.string("runId").unwrap_or_default();
            if run.is_empty() || run.len() > 256 {
                return Err(ParseError::invalid("ag_ui.runId", "must be 1 to 256 bytes"));
            }
            put(&mut d, "thread_id", member("threadId"));
            put(&mut d, "ag_ui", raw);
            let kind = if ev.ty() == T::RunStarted {
                EventKind::AgentStarted
            } else {
                EventKind::AgentCompleted
            };
            (kind, None, Some(Arc::<str>::from(run.as_ref())))
        }
        T::RunError => {
            put(&mut d, "message", member("message"));
            put(&mut d, "ag_ui", raw);
            let own = ev
                .string("runId")
                .filter(|r| !r.is_empty() && r.len() <= 256)
                .map(|r| Arc::<str>::from(r.as_ref()));
            (EventKind::AgentError, None, run_id.or(own))
        }
        T::TextMessageStart | T::TextMessageEnd => {
            put(&mut d, "message_id", text_id(ev, "messageId")?);
            if ev.ty() == T::TextMessageStart {
                put(
                    &mut d,
                    "role",
                    ev.member("role").unwrap_or(b"\"assistant\""),
                );
            }
            put(&mut d, "ag_ui", raw);
            let kind = if ev.ty() == T::TextMessageStart {
                EventKind::MessageStarted
            } else {
                EventKind::MessageCompleted
            };
            (kind, None, run_id)
        }
        T::TextMessageContent => {
            put(&mut d, "message_id", text_id(ev, "messageId")?);
            put(&mut d, "delta", member("delta"));
            (EventKind::MessageDelta, None, run_id)
        }
        T::ToolCallArgs | T::ReasoningMessageContent => {
            let (key, prefix) = if ev.ty() == T::ToolCallArgs {
                ("toolCallId", TOOL_CALL_PREFIX)
            } else {
                ("messageId", REASONING_PREFIX)
            };
            let id = checked_id(ev, key)?;
            let mut prefixed = Vec::with_capacity(id.len() + prefix.len());
            prefixed.push(b'"');
            prefixed.extend_from_slice(prefix.as_bytes());
            prefixed.extend_from_slice(&id[1..]);
            put(&mut d, "message_id", &prefixed);
            put(&mut d, "delta", member("delta"));
            (EventKind::MessageDelta, None, run_id)
        }
        T::ToolCallStart => {
            put(&mut d, "tool", member("toolCallName"));
            put(&mut d, "call_id", member("toolCallId"));
            put(&mut d, "ag_ui", raw);
            (EventKind::ToolExecuting, Some(Priority::Critical), run_id)
        }
        T::ToolCallEnd | T::ToolCallResult => {
            put(&mut d, "call_id", member("toolCallId"));
            put(&mut d, "ag_ui", raw);
            (EventKind::ToolCompleted, Some(Priority::Critical), run_id)
        }
        T::ReasoningStart
        | T::ReasoningMessageStart
        | T::ReasoningMessageEnd
        | T::ReasoningMessageChunk
        | T::ReasoningEnd
        | T::ReasoningEncryptedValue => {
            put(&mut d, "ag_ui", raw);
            (EventKind::AgentThinking, Some(Priority::Critical), run_id)
        }
        other => {
            put(&mut d, "ag_ui", raw);
            let name = format!("ag_ui.{}", other.as_str());
            (
                EventKind::Custom(Arc::from(name)),
                Some(Priority::Critical),
                run_id,
            )
        }
    };
    d.put_u8(b'}');
    Ok(Event {
        kind,
        run_id,
        data: Data::from_validated(d.freeze()),
        priority,
    })
}

/// The raw JSON of id member `key` (a string the parser checked), 1 to [`MAX_ID_BYTES`].
fn checked_id<'a>(ev: &AgUiEvent<'a>, key: &'static str) -> Result<&'a [u8], ParseError> {
    let field = match key {
        "toolCallId" => "ag_ui.toolCallId",
        _ => "ag_ui.messageId",
    };
    let decoded = ev.string(key).ok_or(ParseError::Missing(field))?;
    if decoded.is_empty() || decoded.len() > MAX_ID_BYTES {
        return Err(ParseError::invalid(field, "must be 1 to 240 bytes"));
    }
    ev.member(key).ok_or(ParseError::Missing(field))
}

/// [`checked_id`] of a text message, whose id must not take the reserved prefix.
fn text_id<'a>(ev: &AgUiEvent<'a>, key: &'static str) -> Result<&'a [u8], ParseError> {
    let raw = checked_id(ev, key)?;
    if raw[1..].starts_with(RESERVED_PREFIX.as_bytes()) {
        return Err(ParseError::invalid(
            "ag_ui.messageId",
            "must not start with `ag_ui.` (reserved for tool-call and reasoning streams)",
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(s: &str) -> Event {
        to_native(&AgUiEvent::parse(s.as_bytes()).unwrap(), None).unwrap()
    }

    #[test]
    fn run_started_takes_its_run_id_and_keeps_the_object() {
        let e = native(r#"{"type":"RUN_STARTED","threadId":"t1","runId":"r1"}"#);
        assert_eq!(e.kind, EventKind::AgentStarted);
        assert_eq!(e.run_id.as_deref(), Some("r1"));
        assert_eq!(
            e.data.as_bytes(),
            br#"{"thread_id":"t1","ag_ui":{"type":"RUN_STARTED","threadId":"t1","runId":"r1"}}"#
        );
    }

    #[test]
    fn tool_args_become_prefixed_deltas() {
        let e = native(r#"{"type":"TOOL_CALL_ARGS","toolCallId":"c1","delta":"{\"a\""}"#);
        assert_eq!(e.kind, EventKind::MessageDelta);
        assert_eq!(
            e.data.as_bytes(),
            br#"{"message_id":"ag_ui.tool_call:c1","delta":"{\"a\""}"#
        );
    }

    #[test]
    fn state_delta_is_a_critical_custom_event() {
        let e = native(r#"{"type":"STATE_DELTA","delta":[]}"#);
        assert_eq!(e.kind.as_str(), "ag_ui.STATE_DELTA");
        assert_eq!(e.priority, Some(Priority::Critical));
    }

    #[test]
    fn reserved_and_oversized_ids_are_refused() {
        let ev = AgUiEvent::parse(
            br#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"ag_ui.x","delta":"a"}"#,
        )
        .unwrap();
        assert!(matches!(
            to_native(&ev, None).unwrap_err(),
            ParseError::Invalid {
                field: "ag_ui.messageId",
                ..
            }
        ));
        let long = format!(
            r#"{{"type":"TOOL_CALL_ARGS","toolCallId":"{}","delta":"a"}}"#,
            "x".repeat(241)
        );
        let ev = AgUiEvent::parse(long.as_bytes()).unwrap();
        assert!(matches!(
            to_native(&ev, None).unwrap_err(),
            ParseError::Invalid {
                field: "ag_ui.toolCallId",
                ..
            }
        ));
    }
}
