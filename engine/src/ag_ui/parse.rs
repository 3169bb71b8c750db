//! Validating one AG-UI event object, as a publisher sends it in `{"ag_ui": {...}}`.
//!
//! The checks are those of `EventSchemas` in the npm package `@ag-ui/core` 1.0.0 (the one
//! the tests pin; it and PyPI `ag-ui-protocol` 1.0.0 agree) at the top level of the event:
//! `type` must be one of its 31 `EventType`s (an unknown type is refused, naming it:
//! carrying it would hand AG-UI consumers an event their schemas reject; the pre-1.0
//! `THINKING_*` types are gone from 1.0 and so refused); each member the type's schema
//! requires must be present; each member the schema names must have its JSON type (a
//! string, an array, an object, an integer `timestamp`, a boolean, or one of the literal
//! values for `role` and `subtype`), and an optional member must not be `null` (1.0 refuses
//! that). Members the schema does not name are kept (the schemas are `passthrough`).
//! Nested structures are checked only for their JSON type: the `messages` of
//! `MESSAGES_SNAPSHOT`, a `RUN_STARTED`'s `input`, a `RUN_FINISHED`'s `outcome` and
//! `usage`, a `TOOL_CALL_RESULT`'s `content` parts.
//!
//! agentcast adds `seq` and `seq_from` to the events it delivers, so an event that already
//! has either member is refused; and its own messages are `CUSTOM` events named
//! `agentcast.*`, so a `CUSTOM` event with such a name is refused (a publisher cannot forge
//! a `gap`; the name is compared decoded, so `\u0061gentcast.gap` is refused too). A refusal is a [`ParseError`] whose field is the member's
//! path (`ag_ui.messageId`).
//!
//! Cost: one scan of the object's members (a `Vec` of spans, as [`Members`] keeps them); no
//! copy of any value. Untrusted input never panics here: every value is read through the
//! validated spans.

use std::borrow::Cow;

use crate::error::ParseError;
use crate::json::Members;

macro_rules! ag_ui_types {
    ($($variant:ident = $name:literal,)*) => {
        /// The `type` of an AG-UI event: `@ag-ui/core`'s `EventType`, every member.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum AgUiType { $($variant,)* }

        impl AgUiType {
            /// Every type, in `EventType` order.
            pub const ALL: &'static [AgUiType] = &[$(AgUiType::$variant,)*];

            /// The wire name (`"TEXT_MESSAGE_CONTENT"`).
            pub fn as_str(self) -> &'static str {
                match self { $(AgUiType::$variant => $name,)* }
            }

            /// The type named `s`, if AG-UI has one.
            pub fn from_name(s: &str) -> Option<AgUiType> {
                match s { $($name => Some(AgUiType::$variant),)* _ => None }
            }
        }
    };
}

ag_ui_types! {
    TextMessageStart = "TEXT_MESSAGE_START",
    TextMessageContent = "TEXT_MESSAGE_CONTENT",
    TextMessageEnd = "TEXT_MESSAGE_END",
    TextMessageChunk = "TEXT_MESSAGE_CHUNK",
    ToolCallStart = "TOOL_CALL_START",
    ToolCallArgs = "TOOL_CALL_ARGS",
    ToolCallEnd = "TOOL_CALL_END",
    ToolCallChunk = "TOOL_CALL_CHUNK",
    ToolCallResult = "TOOL_CALL_RESULT",
    StateSnapshot = "STATE_SNAPSHOT",
    StateDelta = "STATE_DELTA",
    MessagesSnapshot = "MESSAGES_SNAPSHOT",
    ActivitySnapshot = "ACTIVITY_SNAPSHOT",
    ActivityDelta = "ACTIVITY_DELTA",
    Raw = "RAW",
    Custom = "CUSTOM",
    RunStarted = "RUN_STARTED",
    RunFinished = "RUN_FINISHED",
    RunError = "RUN_ERROR",
    StepStarted = "STEP_STARTED",
    StepFinished = "STEP_FINISHED",
    ReasoningStart = "REASONING_START",
    ReasoningMessageStart = "REASONING_MESSAGE_START",
    ReasoningMessageContent = "REASONING_MESSAGE_CONTENT",
    ReasoningMessageEnd = "REASONING_MESSAGE_END",
    ReasoningMessageChunk = "REASONING_MESSAGE_CHUNK",
    ReasoningEnd = "REASONING_END",
    ReasoningEncryptedValue = "REASONING_ENCRYPTED_VALUE",
    SubagentStarted = "SUBAGENT_STARTED",
    SubagentFinished = "SUBAGENT_FINISHED",
    SubagentError = "SUBAGENT_ERROR",
}

/// The JSON a schema member must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Str,
    /// A string or an array (of content parts: `TOOL_CALL_RESULT.content`).
    StrOrArr,
    Arr,
    Obj,
    Bool,
    /// An integer JSON can carry exactly (|n| <= 2^53 - 1): `timestamp`.
    Int,
    /// Any value but `null` (`metadata`).
    NotNull,
    /// Any value.
    Any,
    /// One of the text message roles: `developer`, `system`, `assistant`, `user`.
    TextRole,
    /// The literal `"tool"`.
    ToolRole,
    /// The literal `"reasoning"`.
    ReasoningRole,
    /// `"tool-call"` or `"message"`.
    EncryptedSubtype,
}

impl Want {
    fn expected(self) -> &'static str {
        match self {
            Want::Str => "a string",
            Want::StrOrArr => "a string or an array",
            Want::Arr => "an array",
            Want::Obj => "an object",
            Want::Bool => "a boolean",
            Want::Int => "an integer (at most 2^53 - 1 in magnitude)",
            Want::NotNull => "a value other than null",
            Want::Any => "a JSON value",
            Want::TextRole => "one of \"developer\", \"system\", \"assistant\", \"user\"",
            Want::ToolRole => "\"tool\"",
            Want::ReasoningRole => "\"reasoning\"",
            Want::EncryptedSubtype => "\"tool-call\" or \"message\"",
        }
    }

    /// Whether `raw` (one validated JSON value) is what is wanted.
    fn accepts(self, raw: &[u8]) -> bool {
        let first = raw.first().copied().unwrap_or(b' ');
        match self {
            Want::Str => first == b'"',
            Want::StrOrArr => first == b'"' || first == b'[',
            Want::Arr => first == b'[',
            Want::Obj => first == b'{',
            Want::Bool => raw == b"true" || raw == b"false",
            Want::Int => std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .is_some_and(|n| n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_991.0),
            Want::NotNull => raw != b"null",
            Want::Any => true,
            Want::TextRole => matches!(
                raw,
                b"\"developer\"" | b"\"system\"" | b"\"assistant\"" | b"\"user\""
            ),
            Want::ToolRole => raw == b"\"tool\"",
            Want::ReasoningRole => raw == b"\"reasoning\"",
            Want::EncryptedSubtype => raw == b"\"tool-call\"" || raw == b"\"message\"",
        }
    }
}

/// One member of a schema: its name, its path in a refusal, what it holds, whether required.
type Rule = (&'static str, &'static str, Want, bool);

const BASE: &[Rule] = &[
    ("timestamp", "ag_ui.timestamp", Want::Int, false),
    ("rawEvent", "ag_ui.rawEvent", Want::NotNull, false),
    ("metadata", "ag_ui.metadata", Want::NotNull, false),
];

/// The attribution member most 1.0 events have (not `MESSAGES_SNAPSHOT`, the `RUN_*` events
/// or the `SUBAGENT_*` ones, which require it).
const ATTRIBUTION: &[Rule] = &[("subagentRunId", "ag_ui.subagentRunId", Want::Str, false)];

fn attributable(ty: AgUiType) -> bool {
    use AgUiType as T;
    !matches!(
        ty,
        T::MessagesSnapshot
            | T::RunStarted
            | T::RunFinished
            | T::RunError
            | T::SubagentStarted
            | T::SubagentFinished
            | T::SubagentError
    )
}

/// The members `ty`'s schema names (besides `type` and [`BASE`]).
fn rules(ty: AgUiType) -> &'static [Rule] {
    use AgUiType as T;
    use Want::*;
    const MESSAGE_ID: Rule = ("messageId", "ag_ui.messageId", Str, true);
    const TOOL_CALL_ID: Rule = ("toolCallId", "ag_ui.toolCallId", Str, true);
    const DELTA: Rule = ("delta", "ag_ui.delta", Str, true);
    const THREAD_ID: Rule = ("threadId", "ag_ui.threadId", Str, true);
    const RUN_ID: Rule = ("runId", "ag_ui.runId", Str, true);
    const STEP_NAME: Rule = ("stepName", "ag_ui.stepName", Str, true);
    const USAGE: Rule = ("usage", "ag_ui.usage", Arr, false);
    const SUBAGENT_RUN_ID: Rule = ("subagentRunId", "ag_ui.subagentRunId", Str, true);
    match ty {
        T::TextMessageStart => &[
            MESSAGE_ID,
            ("role", "ag_ui.role", TextRole, false),
            ("name", "ag_ui.name", Str, false),
        ],
        T::TextMessageContent => &[MESSAGE_ID, DELTA],
        T::TextMessageEnd | T::ReasoningStart | T::ReasoningMessageEnd | T::ReasoningEnd => {
            &[MESSAGE_ID]
        }
        T::TextMessageChunk => &[
            ("messageId", "ag_ui.messageId", Str, false),
            ("role", "ag_ui.role", TextRole, false),
            ("delta", "ag_ui.delta", Str, false),
            ("name", "ag_ui.name", Str, false),
        ],
        T::ToolCallStart => &[
            TOOL_CALL_ID,
            ("toolCallName", "ag_ui.toolCallName", Str, true),
            ("parentMessageId", "ag_ui.parentMessageId", Str, false),
        ],
        T::ToolCallArgs => &[TOOL_CALL_ID, DELTA],
        T::ToolCallEnd => &[TOOL_CALL_ID],
        T::ToolCallChunk => &[
            ("toolCallId", "ag_ui.toolCallId", Str, false),
            ("toolCallName", "ag_ui.toolCallName", Str, false),
            ("parentMessageId", "ag_ui.parentMessageId", Str, false),
            ("delta", "ag_ui.delta", Str, false),
        ],
        T::ToolCallResult => &[
            MESSAGE_ID,
            TOOL_CALL_ID,
            ("content", "ag_ui.content", StrOrArr, true),
            ("role", "ag_ui.role", ToolRole, false),
        ],
        T::StateSnapshot => &[("snapshot", "ag_ui.snapshot", Any, true)],
        T::StateDelta => &[("delta", "ag_ui.delta", Arr, true)],
        T::MessagesSnapshot => &[("messages", "ag_ui.messages", Arr, true)],
        T::ActivitySnapshot => &[
            MESSAGE_ID,
            ("activityType", "ag_ui.activityType", Str, true),
            ("content", "ag_ui.content", Obj, true),
            ("replace", "ag_ui.replace", Bool, false),
        ],
        T::ActivityDelta => &[
            MESSAGE_ID,
            ("activityType", "ag_ui.activityType", Str, true),
            ("patch", "ag_ui.patch", Arr, true),
        ],
        T::Raw => &[
            ("event", "ag_ui.event", Any, true),
            ("source", "ag_ui.source", Str, false),
        ],
        T::Custom => &[
            ("name", "ag_ui.name", Str, true),
            ("value", "ag_ui.value", Any, true),
        ],
        T::RunStarted => &[
            THREAD_ID,
            RUN_ID,
            ("protocolVersion", "ag_ui.protocolVersion", Str, false),
            ("parentRunId", "ag_ui.parentRunId", Str, false),
            ("input", "ag_ui.input", Obj, false),
        ],
        T::RunFinished => &[
            THREAD_ID,
            RUN_ID,
            ("result", "ag_ui.result", NotNull, false),
            ("outcome", "ag_ui.outcome", Obj, false),
            USAGE,
        ],
        T::RunError => &[
            ("message", "ag_ui.message", Str, true),
            ("code", "ag_ui.code", Str, false),
            USAGE,
        ],
        T::StepStarted | T::StepFinished => &[STEP_NAME],
        T::ReasoningMessageStart => &[MESSAGE_ID, ("role", "ag_ui.role", ReasoningRole, true)],
        T::ReasoningMessageContent => &[MESSAGE_ID, DELTA],
        T::ReasoningMessageChunk => &[
            ("messageId", "ag_ui.messageId", Str, false),
            ("delta", "ag_ui.delta", Str, false),
        ],
        T::ReasoningEncryptedValue => &[
            ("subtype", "ag_ui.subtype", EncryptedSubtype, true),
            ("entityId", "ag_ui.entityId", Str, true),
            ("encryptedValue", "ag_ui.encryptedValue", Str, true),
        ],
        T::SubagentStarted => &[
            SUBAGENT_RUN_ID,
            ("name", "ag_ui.name", Str, true),
            ("description", "ag_ui.description", Str, false),
            (
                "parentSubagentRunId",
                "ag_ui.parentSubagentRunId",
                Str,
                false,
            ),
            ("parentToolCallId", "ag_ui.parentToolCallId", Str, false),
            ("parentMessageId", "ag_ui.parentMessageId", Str, false),
        ],
        T::SubagentFinished => &[
            SUBAGENT_RUN_ID,
            ("result", "ag_ui.result", NotNull, false),
            ("outcome", "ag_ui.outcome", Obj, false),
        ],
        T::SubagentError => &[
            SUBAGENT_RUN_ID,
            ("message", "ag_ui.message", Str, true),
            ("code", "ag_ui.code", Str, false),
        ],
    }
}

/// One validated AG-UI event: its type and its members, borrowed from the publish body.
#[derive(Debug)]
pub struct AgUiEvent<'a> {
    ty: AgUiType,
    raw: &'a [u8],
    members: Members<'a>,
}

impl<'a> AgUiEvent<'a> {
    /// Validates `raw` (one JSON object) as an AG-UI event. See the [module docs](self).
    /// O(n) in the object's length.
    pub fn parse(raw: &'a [u8]) -> Result<AgUiEvent<'a>, ParseError> {
        crate::json::validate(raw)?;
        Self::parse_validated(raw)
    }

    /// [`parse`](Self::parse) of bytes already validated as JSON.
    pub(crate) fn parse_validated(raw: &'a [u8]) -> Result<AgUiEvent<'a>, ParseError> {
        let members = Members::scan_validated(raw).map_err(|e| match e {
            ParseError::TopLevel { .. } => ParseError::WrongType {
                field: "ag_ui",
                expected: "an object (one AG-UI event)",
            },
            ParseError::Duplicate(k) => ParseError::Duplicate(format!("ag_ui.{k}")),
            other => other,
        })?;
        let name = match members.raw("type") {
            None => return Err(ParseError::Missing("ag_ui.type")),
            Some(r) if r.first() == Some(&b'"') => crate::json::decode_string(r)?,
            Some(_) => {
                return Err(ParseError::WrongType {
                    field: "ag_ui.type",
                    expected: "a string",
                });
            }
        };
        let ty = AgUiType::from_name(&name).ok_or_else(|| {
            ParseError::invalid(
                "ag_ui.type",
                format!(
                    "`{}` is not an AG-UI event type",
                    name.chars().take(64).collect::<String>()
                ),
            )
        })?;
        for reserved in ["seq", "seq_from"] {
            if members.raw(reserved).is_some() {
                return Err(ParseError::invalid(
                    if reserved == "seq" {
                        "ag_ui.seq"
                    } else {
                        "ag_ui.seq_from"
                    },
                    "is reserved: agentcast adds it to the events it delivers",
                ));
            }
        }
        let attribution = if attributable(ty) { ATTRIBUTION } else { &[] };
        for &(key, field, want, required) in BASE.iter().chain(attribution).chain(rules(ty)) {
            match members.raw(key) {
                None if required => return Err(ParseError::Missing(field)),
                None => {}
                Some(v) if !want.accepts(v) => {
                    return Err(ParseError::WrongType {
                        field,
                        expected: want.expected(),
                    });
                }
                Some(_) => {}
            }
        }
        if ty == AgUiType::Custom
            && members
                .raw("name")
                .and_then(|n| crate::json::decode_string(n).ok())
                .is_some_and(|n| n.starts_with("agentcast."))
        {
            return Err(ParseError::invalid(
                "ag_ui.name",
                "`agentcast.*` names are reserved for agentcast's own messages",
            ));
        }
        Ok(AgUiEvent { ty, raw, members })
    }

    /// The event's type.
    pub fn ty(&self) -> AgUiType {
        self.ty
    }

    /// The whole object, as sent.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The raw JSON of member `key` (quoted for a string), if present.
    pub fn member(&self, key: &str) -> Option<&'a [u8]> {
        self.members.raw(key)
    }

    /// Member `key` decoded as a string; `None` when absent, `null` or not a string.
    pub fn string(&self, key: &str) -> Option<Cow<'a, str>> {
        let raw = self.members.raw(key)?;
        if raw.first() != Some(&b'"') {
            return None;
        }
        crate::json::decode_string(raw).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> ParseError {
        AgUiEvent::parse(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn every_type_round_trips_its_name() {
        assert_eq!(AgUiType::ALL.len(), 31);
        for &t in AgUiType::ALL {
            assert_eq!(AgUiType::from_name(t.as_str()), Some(t));
        }
    }

    #[test]
    fn a_missing_required_member_is_named() {
        assert_eq!(
            err(r#"{"type":"TEXT_MESSAGE_CONTENT","delta":"x"}"#),
            ParseError::Missing("ag_ui.messageId")
        );
        assert_eq!(
            err(r#"{"type":"TOOL_CALL_START","toolCallId":"t"}"#),
            ParseError::Missing("ag_ui.toolCallName")
        );
        assert_eq!(
            err(r#"{"messageId":"m"}"#),
            ParseError::Missing("ag_ui.type")
        );
    }

    #[test]
    fn a_mistyped_member_is_named() {
        assert!(matches!(
            err(r#"{"type":"STATE_DELTA","delta":{}}"#),
            ParseError::WrongType {
                field: "ag_ui.delta",
                ..
            }
        ));
        assert!(matches!(
            err(r#"{"type":"TEXT_MESSAGE_START","messageId":"m","role":"tool"}"#),
            ParseError::WrongType {
                field: "ag_ui.role",
                ..
            }
        ));
        assert!(matches!(
            err(r#"{"type":"RUN_ERROR","message":"x","timestamp":"now"}"#),
            ParseError::WrongType {
                field: "ag_ui.timestamp",
                ..
            }
        ));
    }

    #[test]
    fn an_unknown_type_is_refused_by_name() {
        match err(r#"{"type":"TEXT_MESSAGE_BEGIN"}"#) {
            ParseError::Invalid { field, reason } => {
                assert_eq!(field, "ag_ui.type");
                assert!(reason.contains("TEXT_MESSAGE_BEGIN"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn agentcast_custom_names_are_reserved() {
        assert!(matches!(
            err(r#"{"type":"CUSTOM","name":"agentcast.gap","value":{}}"#),
            ParseError::Invalid {
                field: "ag_ui.name",
                ..
            }
        ));
        assert!(matches!(
            err(r#"{"type":"CUSTOM","name":"\u0061gentcast.gap","value":{}}"#),
            ParseError::Invalid {
                field: "ag_ui.name",
                ..
            }
        ));
        assert!(AgUiEvent::parse(br#"{"type":"CUSTOM","name":"agentcastle","value":1}"#).is_ok());
    }

    #[test]
    fn seq_members_are_reserved() {
        assert!(matches!(
            err(r#"{"type":"RUN_ERROR","message":"x","seq":3}"#),
            ParseError::Invalid {
                field: "ag_ui.seq",
                ..
            }
        ));
    }

    #[test]
    fn extra_members_are_kept_and_optional_nulls_refused() {
        let raw = br#"{"type":"TOOL_CALL_START","toolCallId":"t","toolCallName":"n","x":1}"#;
        let e = AgUiEvent::parse(raw).unwrap();
        assert_eq!(e.ty(), AgUiType::ToolCallStart);
        assert_eq!(e.member("x"), Some(&b"1"[..]));
        assert!(matches!(
            err(
                r#"{"type":"TOOL_CALL_START","toolCallId":"t","toolCallName":"n","parentMessageId":null}"#
            ),
            ParseError::WrongType {
                field: "ag_ui.parentMessageId",
                ..
            }
        ));
        assert!(matches!(
            err(r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r","result":null}"#),
            ParseError::WrongType {
                field: "ag_ui.result",
                ..
            }
        ));
        assert!(AgUiEvent::parse(br#"{"type":"CUSTOM","name":"n","value":null}"#).is_ok());
        assert_eq!(
            err(r#"{"type":"CUSTOM","name":"n"}"#),
            ParseError::Missing("ag_ui.value")
        );
        assert!(matches!(
            err(r#"{"type":"RUN_ERROR","message":"x","timestamp":1.5}"#),
            ParseError::WrongType {
                field: "ag_ui.timestamp",
                ..
            }
        ));
        assert!(AgUiEvent::parse(br#"{"type":"RUN_ERROR","message":"x","timestamp":1e3}"#).is_ok());
        assert!(matches!(
            err(r#"{"type":"THINKING_START"}"#),
            ParseError::Invalid {
                field: "ag_ui.type",
                ..
            }
        ));
    }
}
