//! Agent events: their kinds, priorities, targets and the envelope a publisher hands the hub.
//!
//! An [`Event`] is what a publisher says ("agent `r1` started, here is my data"); the hub adds
//! what only it knows (the per-user `seq`, the `ts`) when it turns the event into a
//! [`Frame`](crate::Frame). The publisher's `data` is kept as the exact bytes it sent: it is
//! validated JSON, never re-encoded, so nested objects, arrays, big numbers and unicode escapes
//! reach the client byte for byte.
//!
//! Priorities decide what a full connection ring gives up first (see [`crate::ring`]):
//! [`Priority::Low`] (coalesced or dropped), then [`Priority::Normal`] (dropped), while a
//! [`Priority::Critical`] event is never dropped silently: the connection is closed instead.
//! The message-stream kinds (`message_started`, `message_delta`, `message_completed`) are
//! `normal` but never dropped either: deltas merge, and what cannot be queued closes the
//! connection like a critical event.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::InvalidName;

/// How important an event is to the user watching an agent.
///
/// The order of the variants is the order in which a full ring keeps them:
/// `Low < Normal < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// May be coalesced with a newer event of the same run, or dropped first (`agent_thinking`).
    Low = 0,
    /// Dropped only after every low event is gone (`tool_executing`, `tool_completed`, custom).
    Normal = 1,
    /// Never dropped silently (`agent_started`, `agent_completed`, `agent_error`); tracked until
    /// acknowledged.
    Critical = 2,
}

impl Priority {
    /// All priorities, lowest first; index `p as usize` into per-priority counters.
    pub const ALL: [Priority; 3] = [Priority::Low, Priority::Normal, Priority::Critical];

    /// The lower-case name used on the wire and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::Critical => "critical",
        }
    }

    /// Parses the wire name (`low`, `normal`, `critical`).
    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "low" => Some(Priority::Low),
            "normal" => Some(Priority::Normal),
            "critical" => Some(Priority::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of an event: one of the six agent lifecycle events or a custom type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The agent began working on a run.
    AgentStarted,
    /// The agent is reasoning; a newer one of the same run supersedes an older one.
    AgentThinking,
    /// The agent started a tool.
    ToolExecuting,
    /// A tool finished.
    ToolCompleted,
    /// The run finished with a result.
    AgentCompleted,
    /// The run failed.
    AgentError,
    /// A message (the answer, usually) begins: `data` has `message_id` and `role`.
    MessageStarted,
    /// A fragment of a message's text: `data` has `message_id` and `delta`. Never dropped:
    /// merged with the next ones of its message instead (see [`crate::delta`]).
    MessageDelta,
    /// A message is complete: `data` has `message_id`.
    MessageCompleted,
    /// Any other type a publisher chooses (validated like a name: see [`EventKind::parse`]).
    Custom(Arc<str>),
}

impl EventKind {
    /// The six agent lifecycle kinds, in lifecycle order.
    pub const AGENT: [EventKind; 6] = [
        EventKind::AgentStarted,
        EventKind::AgentThinking,
        EventKind::ToolExecuting,
        EventKind::ToolCompleted,
        EventKind::AgentCompleted,
        EventKind::AgentError,
    ];

    /// Parses a wire type. Known names map to their variant; anything else that is a valid
    /// name (1 to 64 bytes of `[A-Za-z0-9_.:-]`) becomes [`EventKind::Custom`]. Reserved
    /// server message types (`welcome`, `gap`, `error`, `pong`, and every `agentcast.*`
    /// name, which they take in AG-UI mode) are refused so a publisher cannot forge them.
    pub fn parse(s: &str) -> Result<EventKind, InvalidName> {
        Ok(match s {
            "agent_started" => EventKind::AgentStarted,
            "agent_thinking" => EventKind::AgentThinking,
            "tool_executing" => EventKind::ToolExecuting,
            "tool_completed" => EventKind::ToolCompleted,
            "agent_completed" => EventKind::AgentCompleted,
            "agent_error" => EventKind::AgentError,
            "message_started" => EventKind::MessageStarted,
            "message_delta" => EventKind::MessageDelta,
            "message_completed" => EventKind::MessageCompleted,
            "welcome" | "gap" | "error" | "pong" => return Err(InvalidName::Reserved),
            // The names of agentcast's own messages in AG-UI mode (`CUSTOM` `agentcast.*`).
            other if other.starts_with("agentcast.") => return Err(InvalidName::Reserved),
            other => {
                validate_name(other, 64, |b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
                })?;
                EventKind::Custom(Arc::from(other))
            }
        })
    }

    /// The three message-stream kinds, in stream order.
    pub const MESSAGE: [EventKind; 3] = [
        EventKind::MessageStarted,
        EventKind::MessageDelta,
        EventKind::MessageCompleted,
    ];

    /// Slots of [`EventKind::index`].
    pub const SLOTS: usize = 10;

    /// 0..=5 for the six agent events in lifecycle order, 6..=8 for the message events, 9 for
    /// every custom type.
    pub fn index(&self) -> usize {
        match self {
            EventKind::AgentStarted => 0,
            EventKind::AgentThinking => 1,
            EventKind::ToolExecuting => 2,
            EventKind::ToolCompleted => 3,
            EventKind::AgentCompleted => 4,
            EventKind::AgentError => 5,
            EventKind::MessageStarted => 6,
            EventKind::MessageDelta => 7,
            EventKind::MessageCompleted => 8,
            EventKind::Custom(_) => 9,
        }
    }

    /// The label of slot `i` of [`EventKind::index`] (`"custom"` for 9).
    pub fn slot_name(i: usize) -> &'static str {
        [
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "agent_completed",
            "agent_error",
            "message_started",
            "message_delta",
            "message_completed",
        ]
        .get(i)
        .copied()
        .unwrap_or("custom")
    }

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::AgentStarted => "agent_started",
            EventKind::AgentThinking => "agent_thinking",
            EventKind::ToolExecuting => "tool_executing",
            EventKind::ToolCompleted => "tool_completed",
            EventKind::AgentCompleted => "agent_completed",
            EventKind::AgentError => "agent_error",
            EventKind::MessageStarted => "message_started",
            EventKind::MessageDelta => "message_delta",
            EventKind::MessageCompleted => "message_completed",
            EventKind::Custom(s) => s,
        }
    }

    /// Whether this is one of the six agent lifecycle kinds.
    pub fn is_agent(&self) -> bool {
        self.index() < 6
    }

    /// Whether this is one of the three message-stream kinds.
    pub fn is_message(&self) -> bool {
        matches!(
            self,
            EventKind::MessageStarted | EventKind::MessageDelta | EventKind::MessageCompleted
        )
    }

    /// Whether a publish of this kind must name its `run_id` (agent and message kinds).
    pub fn requires_run(&self) -> bool {
        !matches!(self, EventKind::Custom(_))
    }

    /// The priority DESIGN.md gives this kind when configuration does not override it.
    pub fn default_priority(&self) -> Priority {
        match self {
            EventKind::AgentStarted | EventKind::AgentCompleted | EventKind::AgentError => {
                Priority::Critical
            }
            EventKind::AgentThinking => Priority::Low,
            EventKind::ToolExecuting
            | EventKind::ToolCompleted
            | EventKind::MessageStarted
            | EventKind::MessageDelta
            | EventKind::MessageCompleted
            | EventKind::Custom(_) => Priority::Normal,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maps event kinds to priorities: the defaults of [`EventKind::default_priority`] with
/// per-type overrides from configuration.
#[derive(Debug, Clone, Default)]
pub struct PriorityTable {
    overrides: HashMap<String, Priority>,
}

impl PriorityTable {
    /// Overrides the priority of the type named `kind` (agent or custom).
    pub fn set(&mut self, kind: &str, priority: Priority) -> &mut Self {
        self.overrides.insert(kind.to_owned(), priority);
        self
    }

    /// The priority of `kind`: its override if any, else its default. O(1) expected; no
    /// lookup at all when no override is configured.
    pub fn priority(&self, kind: &EventKind) -> Priority {
        if self.overrides.is_empty() {
            return kind.default_priority();
        }
        self.overrides
            .get(kind.as_str())
            .copied()
            .unwrap_or_else(|| kind.default_priority())
    }
}

/// A user id: the JWT `sub` of the user's connections, or the `user_id` of a publish.
///
/// Cloning is a reference-count increment. Valid ids are 1 to 256 bytes without control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Validates and wraps a user id.
    pub fn new(s: &str) -> Result<UserId, InvalidName> {
        validate_name(s, 256, |b| !b.is_ascii_control())?;
        Ok(UserId(Arc::from(s)))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An internal user (the health canary): its id begins with a control character, which
    /// [`UserId::new`] refuses, so no token or publisher can name it.
    pub(crate) fn internal(name: &str) -> UserId {
        UserId(Arc::from(format!("\u{1}{name}")))
    }

    /// Whether this is an internal user (see [`crate::health`]).
    pub fn is_internal(&self) -> bool {
        self.0.as_bytes().first() == Some(&1)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A channel name, such as `job:42`.
///
/// Valid names are 1 to 128 bytes of `[A-Za-z0-9_.:@/-]`. `*` is not allowed in a name: it is
/// the wildcard of channel grants and the `channel` value of broadcast events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    /// Validates and wraps a channel name.
    pub fn new(s: &str) -> Result<ChannelName, InvalidName> {
        validate_name(s, 128, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'/' | b'-')
        })?;
        Ok(ChannelName(Arc::from(s)))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn validate_name(s: &str, max: usize, ok: impl Fn(u8) -> bool) -> Result<(), InvalidName> {
    if s.is_empty() {
        return Err(InvalidName::Empty);
    }
    if s.len() > max {
        return Err(InvalidName::TooLong { max });
    }
    if !s.bytes().all(ok) {
        return Err(InvalidName::BadCharacter);
    }
    Ok(())
}

/// Who receives an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every connection of one user; the event gets a per-user `seq` and enters the user's
    /// history (kept for offline users, replayed on resume).
    User(UserId),
    /// Every connection subscribed to a channel; no `seq`, no history.
    Channel(ChannelName),
    /// Every connection on the node; no `seq`, no history.
    Broadcast,
}

/// The publisher's JSON `data`, as the exact bytes it sent.
///
/// Built only from bytes that parsed as JSON ([`Data::from_json`]) or from an empty object,
/// so splicing it into a frame always yields valid JSON. Cloning is a reference-count bump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data(Bytes);

impl Data {
    /// `{}`.
    pub fn empty() -> Data {
        Data(Bytes::from_static(b"{}"))
    }

    /// Validates `json` (depth, then simd-json) and keeps its bytes as given. O(n).
    pub fn from_json(json: impl Into<Bytes>) -> Result<Data, crate::error::ParseError> {
        let bytes = json.into();
        crate::json::validate(&bytes)?;
        Ok(Data(bytes))
    }

    /// Wraps bytes already validated as one JSON value (crate-internal fast path).
    pub(crate) fn from_validated(bytes: Bytes) -> Data {
        Data(bytes)
    }

    /// The raw JSON bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Default for Data {
    fn default() -> Data {
        Data::empty()
    }
}

/// An event as a publisher gives it to the hub.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event type.
    pub kind: EventKind,
    /// The agent run this event belongs to (required for agent kinds by the parsers).
    pub run_id: Option<Arc<str>>,
    /// The publisher's JSON data, kept byte for byte.
    pub data: Data,
    /// A per-event priority override; `None` uses the hub's [`PriorityTable`].
    pub priority: Option<Priority>,
}

impl Event {
    /// An event of `kind` for run `run_id` with `data`.
    pub fn new(kind: EventKind, run_id: impl Into<Arc<str>>, data: Data) -> Event {
        Event {
            kind,
            run_id: Some(run_id.into()),
            data,
            priority: None,
        }
    }
}
