//! [`UserEmitter`]: how a Rust backend embedding agentcast publishes one run's events.
//!
//! One typed method per agent event; each publishes to every connection of the emitter's
//! user, with the emitter's run id, and returns the [`PublishReply`] (await it, wait on it, or
//! drop it to fire and forget).
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
//! ```

use std::sync::Arc;

use crate::error::HubClosed;
use crate::event::{Data, Event, EventKind, Target, UserId};
use crate::hub::{Hub, PublishReply};

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
            pub fn $name(&self, data: Data) -> Result<PublishReply, HubClosed> {
                self.emit(EventKind::$kind, data)
            }
        )*
    };
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

    /// An event of any kind (custom types included) for this run.
    pub fn emit(&self, kind: EventKind, data: Data) -> Result<PublishReply, HubClosed> {
        self.hub.publish(
            Target::User(self.user.clone()),
            Event::new(kind, Arc::clone(&self.run_id), data),
        )
    }
}
