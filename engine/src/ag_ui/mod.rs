//! AG-UI (the Agent-User Interaction protocol, `ag-ui-protocol/ag-ui`, npm `@ag-ui/core`)
//! in and out: validating an AG-UI event a publisher sends, mapping it onto the native event
//! model, and rebuilding an AG-UI event from any frame for a `?protocol=ag-ui` connection.
//!
//! The full mapping table, what is lossless and what is not, and the priorities are in
//! `docs/ag-ui.md`; this module is the code behind it.
//!
//! - [`parse`] — [`AgUiEvent::parse`]: the event's `type` (one of the 31 of `@ag-ui/core` 1.0.0's
//!   `EventType`; an unknown type is refused, naming it) and the members its schema requires,
//!   with their JSON types. A refusal names the member (`ag_ui.messageId`).
//! - [`map`] — [`to_native`]: one AG-UI event → one native [`Event`](crate::event::Event).
//!   Text, tool-argument and reasoning token streams become `message_delta`s, so they merge
//!   and are never dropped; everything else keeps the original AG-UI object in `data.ag_ui`.
//! - [`encode`] — [`to_ag_ui`]: one engine frame (native or AG-UI-published, a server
//!   message, a merged delta) → one AG-UI event object, plus `seq` / `seq_from`.
//!
//! # Why in the engine
//!
//! All three are sans-IO and deterministic over untrusted bytes, like [`crate::publish`] and
//! [`crate::delta`], which they sit beside: the publish parser calls [`map`], and the
//! encoder reads frames in the engine's own wire format (the one [`crate::delta`] reads
//! back). Keeping them here lets the fuzz target (`fuzz_targets/ag_ui_event.rs`) and the
//! round-trip property test reach them without a server. The server only decides *when*
//! to call [`to_ag_ui`]: per connection, in the write path of `?protocol=ag-ui` connections.
//!
//! # Cost
//!
//! Parsing is one scan of the AG-UI object (plus one of `data` when a member's type is
//! checked) and builds one `data` buffer no bigger than the object plus a few dozen bytes:
//! memory is bounded by the publish body limit. Encoding is one scan of the frame and one
//! output buffer, paid only by AG-UI connections; the engine still serializes each event once
//! and native connections write the shared frame untouched.
//!
//! # Example
//!
//! ```
//! use agentcast_engine::ag_ui::{AgUiEvent, to_native};
//! let raw = br#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":"Hel"}"#;
//! let ev = AgUiEvent::parse(raw).unwrap();
//! let native = to_native(&ev, None).unwrap();
//! assert_eq!(native.kind.as_str(), "message_delta");
//! assert_eq!(native.data.as_bytes(), br#"{"message_id":"m1","delta":"Hel"}"#);
//! ```

pub mod encode;
pub mod map;
pub mod parse;

pub use encode::to_ag_ui;
pub use map::to_native;
pub use parse::{AgUiEvent, AgUiType};

/// The `message_id` prefix of a `message_delta` that carries a `TOOL_CALL_ARGS` stream: the
/// rest is the `toolCallId`. AG-UI text message ids may not start with `ag_ui.`.
pub const TOOL_CALL_PREFIX: &str = "ag_ui.tool_call:";

/// The `message_id` prefix of a `message_delta` that carries a `REASONING_MESSAGE_CONTENT`
/// stream: the rest is the reasoning message's `messageId`.
pub const REASONING_PREFIX: &str = "ag_ui.reasoning:";

/// The reserved prefix of message ids (see [`TOOL_CALL_PREFIX`]).
pub const RESERVED_PREFIX: &str = "ag_ui.";
