//! [`UserEmitter`]: how a Rust backend embedding agentcast publishes one run's events.
//!
//! One typed method per agent event; each publishes to every connection of the emitter's
//! user, with the emitter's run id, and returns the [`PublishReply`] (await it, wait on it, or
//! drop it to fire and forget).
//!
//! Two families: the `agent_*` / `tool_*` methods take the event's whole `data`; the typed
//! methods ([`UserEmitter::started`], [`thinking`](UserEmitter::thinking),
//! [`tool_started`](UserEmitter::tool_started), [`tool_finished`](UserEmitter::tool_finished),
//! [`completed`](UserEmitter::completed), [`error`](UserEmitter::error), …) take typed fields
//! and write the `data` members the engine's [enrichment](crate::enrich) reads — the same JSON
//! an HTTP publisher would send, so the delivered `meta` is identical.
//!
//! ```
//! use agentcast_engine::{Data, Hub, HubConfig, UserId};
//!
//! let hub = Hub::start(HubConfig::default()).unwrap();
//! let run = hub.emitter(UserId::new("u1").unwrap(), "run-7");
//! let receipt = run.agent_started(Data::from_json(r#"{"goal":"plan a trip"}"#).unwrap())
//!     .unwrap()
//!     .wait()
//!     .unwrap();
//! assert!(receipt.seq.is_some());
//! drop(run.agent_thinking(Data::empty()).unwrap());
//! drop(run.thinking(2, 5, "Comparing flights").unwrap());
//! drop(run.tool_started("web_search", Data::from_json(r#"{"q":"flights"}"#).unwrap()).unwrap());
//! // An answer, token by token.
//! drop(run.message_started("m1", "assistant").unwrap());
//! for token in ["Three ", "options ", "found."] {
//!     drop(run.message_delta("m1", token).unwrap());
//! }
//! drop(run.message_completed("m1", 19).unwrap());
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use crate::error::PublishError;
use crate::event::{Data, Event, EventKind, Target, UserId};
use crate::frame::{write_str, write_u64};
use crate::hub::Hub;
use crate::reply::PublishReply;

/// Publishes the events of one run of one user. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UserEmitter {
    hub: Hub,
    user: UserId,
    run_id: Arc<str>,
}

macro_rules! agent_methods {
    ($( $(#[$doc:meta])* $name:ident => $kind:ident ),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(&self, data: Data) -> Result<PublishReply, PublishError> {
                self.emit(EventKind::$kind, data)
            }
        )*
    };
}

impl Hub {
    /// A typed publisher for one user's run. See [`UserEmitter`].
    pub fn emitter(&self, user: UserId, run_id: impl Into<Arc<str>>) -> UserEmitter {
        UserEmitter::new(self.clone(), user, run_id.into())
    }
}

impl UserEmitter {
    pub(crate) fn new(hub: Hub, user: UserId, run_id: Arc<str>) -> UserEmitter {
        UserEmitter { hub, user, run_id }
    }

    /// The user.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The run.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    agent_methods! {
        /// `agent_started` (critical): the agent began working on the run.
        agent_started => AgentStarted,
        /// `agent_thinking` (low; a newer one may replace an older one still queued).
        agent_thinking => AgentThinking,
        /// `tool_executing` (normal): a tool started.
        tool_executing => ToolExecuting,
        /// `tool_completed` (normal): a tool finished.
        tool_completed => ToolCompleted,
        /// `agent_completed` (critical): the run finished.
        agent_completed => AgentCompleted,
        /// `agent_error` (critical): the run failed.
        agent_error => AgentError,
    }

    /// `agent_started` with `{"agent": agent, "expected_ms": …}`: `expected` (when given) is
    /// the run's expected duration, the reference of `meta.urgency`.
    pub fn started(
        &self,
        agent: &str,
        expected: Option<Duration>,
    ) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("agent", agent);
        if let Some(e) = expected {
            b.u64("expected_ms", e.as_millis().min(u64::MAX as u128) as u64);
        }
        self.emit(EventKind::AgentStarted, b.finish())
    }

    /// `agent_thinking` with `{"message": …, "step": step, "total_steps": total}`: delivered
    /// with `meta.progress` (`percent` = 100 × step / total) and `meta.urgency`.
    pub fn thinking(
        &self,
        step: u64,
        total: u64,
        message: &str,
    ) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("message", message);
        b.u64("step", step);
        b.u64("total_steps", total);
        self.emit(EventKind::AgentThinking, b.finish())
    }

    /// `agent_thinking` with `{"message": …, "progress": percent}` (a non-finite percent is
    /// left out): delivered with `meta.progress.percent` (clamped, rounded) and `meta.urgency`.
    pub fn thinking_percent(
        &self,
        percent: f64,
        message: &str,
    ) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("message", message);
        if percent.is_finite() {
            b.key("progress");
            b.0.put_slice(format!("{percent}").as_bytes());
        }
        self.emit(EventKind::AgentThinking, b.finish())
    }

    /// `tool_executing` with `{"tool": tool, "input": input}`: delivered with the catalog's
    /// `meta.category` and `meta.purpose` and the learned `meta.estimated_ms`.
    pub fn tool_started(&self, tool: &str, input: Data) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("tool", tool);
        b.raw("input", input.as_bytes());
        self.emit(EventKind::ToolExecuting, b.finish())
    }

    /// [`UserEmitter::tool_started`] with a `call_id`, to tell apart concurrent calls of the
    /// same tool (pair it with [`UserEmitter::tool_finished_call`]).
    pub fn tool_started_call(
        &self,
        tool: &str,
        call_id: &str,
        input: Data,
    ) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("tool", tool);
        b.str("call_id", call_id);
        b.raw("input", input.as_bytes());
        self.emit(EventKind::ToolExecuting, b.finish())
    }

    /// `tool_completed` with `{"tool": tool, "output": output}`: delivered with
    /// `meta.duration_ms` since the matching `tool_executing`.
    pub fn tool_finished(&self, tool: &str, output: Data) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("tool", tool);
        b.raw("output", output.as_bytes());
        self.emit(EventKind::ToolCompleted, b.finish())
    }

    /// [`UserEmitter::tool_finished`] for the call `call_id`.
    pub fn tool_finished_call(
        &self,
        tool: &str,
        call_id: &str,
        output: Data,
    ) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("tool", tool);
        b.str("call_id", call_id);
        b.raw("output", output.as_bytes());
        self.emit(EventKind::ToolCompleted, b.finish())
    }

    /// `agent_completed` with `{"result": result}`: closes the run.
    pub fn completed(&self, result: Data) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.raw("result", result.as_bytes());
        self.emit(EventKind::AgentCompleted, b.finish())
    }

    /// `agent_error` with `{"code": code, "message": message}`: delivered with
    /// `meta.severity`, `meta.category`, a user-facing `meta.message`,
    /// `meta.recovery_suggestions` and `meta.fatal` (whether it closed the run).
    pub fn error(&self, code: &str, message: &str) -> Result<PublishReply, PublishError> {
        self.error_detail(code, None, message, None)
    }

    /// `agent_error` with `{"code", "category", "message", "fatal"}` (`category` and `fatal`
    /// only when given): `category` names an error category directly; `fatal` overrides
    /// whether the error closes the run.
    pub fn error_detail(
        &self,
        code: &str,
        category: Option<&str>,
        message: &str,
        fatal: Option<bool>,
    ) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("code", code);
        if let Some(c) = category {
            b.str("category", c);
        }
        b.str("message", message);
        if let Some(f) = fatal {
            b.raw("fatal", if f { b"true" } else { b"false" });
        }
        self.emit(EventKind::AgentError, b.finish())
    }

    /// `message_started` with `{"message_id": id, "role": role}`: a streamed message begins.
    pub fn message_started(&self, id: &str, role: &str) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("message_id", id);
        b.str("role", role);
        self.emit(EventKind::MessageStarted, b.finish())
    }

    /// `message_delta` with `{"message_id": id, "delta": text}`: one fragment of the message.
    /// Never dropped; merged with the next ones under backpressure (see [`crate::delta`]).
    pub fn message_delta(&self, id: &str, text: &str) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("message_id", id);
        b.str("delta", text);
        self.emit(EventKind::MessageDelta, b.finish())
    }

    /// `message_completed` with `{"message_id": id, "length": chars}`.
    pub fn message_completed(&self, id: &str, chars: u64) -> Result<PublishReply, PublishError> {
        let mut b = JsonObject::new();
        b.str("message_id", id);
        b.u64("length", chars);
        self.emit(EventKind::MessageCompleted, b.finish())
    }

    /// An event of any kind (custom types included) for this run.
    pub fn emit(&self, kind: EventKind, data: Data) -> Result<PublishReply, PublishError> {
        self.hub.publish(
            Target::User(self.user.clone()),
            Event::new(kind, Arc::clone(&self.run_id), data),
        )
    }
}

/// Writes a flat JSON object of the typed methods: string members escaped by
/// [`write_str`], raw members copied from already valid JSON ([`Data`] or literals).
struct JsonObject(BytesMut);

impl JsonObject {
    fn new() -> JsonObject {
        let mut b = BytesMut::with_capacity(128);
        b.put_u8(b'{');
        JsonObject(b)
    }

    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.put_u8(b',');
        }
        write_str(&mut self.0, k);
        self.0.put_u8(b':');
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        write_str(&mut self.0, v);
    }

    fn u64(&mut self, k: &str, v: u64) {
        self.key(k);
        write_u64(&mut self.0, v);
    }

    fn raw(&mut self, k: &str, json: &[u8]) {
        self.key(k);
        self.0.put_slice(json);
    }

    fn finish(mut self) -> Data {
        self.0.put_u8(b'}');
        // Valid by construction: escaped strings, digits, and members that are valid JSON.
        Data::from_validated(self.0.freeze())
    }
}
