//! Configuration of a [`Hub`](crate::Hub). Every field states its default.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::seed::BrokerHealth;
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::enrich::catalog::{ErrorCategory, Severity, ToolInfo};
use crate::escalation::Escalation;
use crate::event::PriorityTable;
use crate::health::state::HealthConfig;

/// How a hub is sized and which limits it enforces.
///
/// `#[non_exhaustive]`: start from [`HubConfig::default()`] and set fields.
#[derive(Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// Number of shards, one worker thread each. Default: the number of cores.
    pub shards: usize,
    /// Frames a connection may hold in its priority ring before the overflow policy applies
    /// (see [`crate::ring`]). Default: 256.
    pub ring_capacity: usize,
    /// Frames handed to the transport at once (the lock-free hand-off queue per connection),
    /// rounded up to a power of two; a connection holds at most `ring_capacity + write_batch`
    /// frames. Default: 32.
    pub write_batch: usize,
    /// The most wall-clock time a shard's worker spends writing one publish's or fan-out's
    /// frame to sockets itself (direct writes, see [`crate::sink`]); the connections left when
    /// it is spent get the frame through their queue, written by their transports. Bounds how
    /// long the worker's other commands wait behind a large broadcast, and, when the cores are
    /// starved (the budget is wall time), hands the writing back to the transports, so an
    /// overload lands in the connections' rings and their slow-consumer policy as without
    /// direct writes. Default: 50 ms.
    pub direct_write_budget: Duration,
    /// Events kept per user for offline delivery and resume. Default: 1,000.
    pub history_len: usize,
    /// Age after which a history event is no longer kept. Default: 10 minutes.
    pub history_max_age: Duration,
    /// How long a user with no connection keeps state (seq, ack cursor, history) after its last
    /// connection closed or its last event arrived. Default: 5 minutes.
    pub user_ttl: Duration,
    /// Keep an idle user's state past `user_ttl` while its history still holds events (they
    /// then age out with `history_max_age`). Default: false.
    pub retain_history: bool,
    /// How long a critical user event may stay unacknowledged before it is escalated.
    /// Default: 30 seconds.
    pub ack_deadline: Duration,
    /// Priority per event type. Default: DESIGN.md's table.
    pub priorities: PriorityTable,
    /// How often each worker runs housekeeping (deadlines, eviction). Default: 50 ms.
    pub tick: Duration,
    /// Called (on a dedicated thread, never on the hot path) for each escalated event.
    /// Default: none (escalations are still counted).
    pub escalation: Option<Arc<dyn Escalation>>,
    /// Escalations waiting for the hook; beyond it they are counted as dropped. Default: 4,096.
    pub escalation_queue: usize,
    /// The health monitor, canary and worker recovery (see [`crate::health`]). Default: the
    /// monitor off, recovery on (5 restarts).
    pub health: HealthConfig,
    /// Run tracking and event enrichment (see [`crate::enrich`]). Default:
    /// [`EnrichmentConfig::default()`] (enabled).
    pub enrichment: EnrichmentConfig,
    /// Users with state on this node (each shard holds at most `max_users / shards`, rounded
    /// up). Creating one more (a publish to, or a connection of, a user without state) first
    /// evicts the least recently active user without a connection, whose next resume with
    /// `last_seq` gets a `gap`; if every user has a connection, nothing is evicted (their
    /// number is bounded by the connection limit). Counted in `users_evicted_over_limit`.
    /// Default: 1,000,000 (about 1.1 KiB each without history: ~1.1 GiB).
    pub max_users: usize,
    /// History bytes of one user (see [`crate::history`] for how an entry is sized); the
    /// oldest events are evicted to fit a new one, and an event larger than this is not kept.
    /// At most 4 GiB (a larger value counts as 4 GiB). Default: 8 MiB.
    pub max_history_bytes_per_user: usize,
    /// History bytes of all users of this node (each shard holds at most
    /// `max_history_bytes / shards`). A publish that takes its shard over it evicts the least
    /// recently active users without a connection (whole state, as for `max_users`), then the
    /// oldest events of the user published to. Default: 2 GiB.
    pub max_history_bytes: usize,
    // Overload (H1).
    /// Publishes a shard's command queue may hold before further ones are refused with
    /// [`PublishError::Overloaded`](crate::PublishError::Overloaded); the check is O(1).
    /// Default: 262,144.
    pub command_queue: usize,
    // --- escalation policy (H5 ops) ---
    /// Escalate an overdue critical event of a user whose state never had a connection (a
    /// user the node has not seen connect since its state was created). When false such
    /// events are counted as `escalations_skipped` instead. Default: true.
    pub escalate_never_connected: bool,
    // --- cluster mode (issue 13) ---
    /// The health of an external broker (cluster mode; see [`crate::broker`]): reported as the
    /// `broker` component instead of the in-process one. Default: none (embedded).
    pub broker_health: Option<Arc<dyn BrokerHealth>>,
    /// Where the shards and the publish path read wall-clock time (see [`crate::clock`]):
    /// publish timestamps, seq bases and the seq clock cap, idle-user TTLs, ack deadlines,
    /// history and run ages. A test sets a [`ManualClock`] to drive them without sleeping.
    /// Default: [`SystemClock`].
    pub clock: Arc<dyn Clock>,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ring_capacity: 256,
            write_batch: 32,
            direct_write_budget: Duration::from_millis(50),
            history_len: 1_000,
            history_max_age: Duration::from_secs(600),
            user_ttl: Duration::from_secs(300),
            retain_history: false,
            ack_deadline: Duration::from_secs(30),
            priorities: PriorityTable::default(),
            tick: Duration::from_millis(50),
            escalation: None,
            escalation_queue: 4_096,
            health: HealthConfig::default(),
            enrichment: EnrichmentConfig::default(),
            max_users: 1_000_000,
            max_history_bytes_per_user: 8 << 20,
            max_history_bytes: 2 << 30,
            command_queue: 1 << 18,
            escalate_never_connected: true,
            broker_health: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("shards", &self.shards)
            .field("ring_capacity", &self.ring_capacity)
            .field("write_batch", &self.write_batch)
            .field("history_len", &self.history_len)
            .field("history_max_age", &self.history_max_age)
            .field("user_ttl", &self.user_ttl)
            .field("retain_history", &self.retain_history)
            .field("ack_deadline", &self.ack_deadline)
            .field("tick", &self.tick)
            .field("escalation", &self.escalation.is_some())
            .field("health", &self.health)
            .field("enrichment", &self.enrichment)
            .field("max_users", &self.max_users)
            .field(
                "max_history_bytes_per_user",
                &self.max_history_bytes_per_user,
            )
            .field("max_history_bytes", &self.max_history_bytes)
            .field("command_queue", &self.command_queue)
            .field("escalate_never_connected", &self.escalate_never_connected)
            .field(
                "broker_health",
                &self.broker_health.as_ref().map(|b| b.kind()),
            )
            .finish_non_exhaustive()
    }
}

/// The rules of run tracking and enrichment (see [`crate::enrich`] for what each produces and
/// `docs/events.md` for the delivered fields).
///
/// `#[non_exhaustive]`: start from [`EnrichmentConfig::default()`] and set fields. The tool
/// catalog and the error tables are plain maps: insert, replace or remove entries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnrichmentConfig {
    /// Track runs and add the `meta` member to agent events. When false, events are delivered
    /// exactly as before this feature (no `meta`, no run state). Default: true.
    pub enabled: bool,
    /// Expected duration of a run whose `agent_started` data gives no `expected_ms`; the
    /// reference of `urgency`. Default: 60 seconds.
    pub expected_run: Duration,
    /// `urgency` of `agent_thinking` becomes `normal` once `elapsed / expected` reaches this
    /// ratio (below it: `low`). Default: 0.5.
    pub urgency_normal_at: f64,
    /// `urgency` becomes `high` once `elapsed / expected` reaches this ratio. Default: 1.0
    /// (the run is overdue).
    pub urgency_high_at: f64,
    /// Tool catalog: tool name (exact, case-sensitive) → category, purpose and an optional
    /// prior duration estimate. Default: [`default_tool_catalog`].
    pub tools: HashMap<String, ToolInfo>,
    /// Category given to a tool missing from the catalog (its purpose is `Running <tool>`).
    /// Default: `"other"`.
    pub unknown_tool_category: String,
    /// Weight of the newest observation in the per-tool moving average of durations
    /// (exponentially weighted; 1.0 keeps only the last one). Clamped to (0, 1]. Default: 0.2.
    pub estimate_weight: f64,
    /// Distinct tool names whose durations a shard learns; names beyond are not learned (a
    /// publisher cannot grow the table without bound). Default: 1,024.
    pub max_learned_tools: usize,
    /// Error classification, first match wins: `(pattern, category)`, where `pattern` is
    /// matched case-insensitively as a substring of the error's `code`, then of its
    /// `category`. Default: [`default_error_patterns`].
    pub error_patterns: Vec<(String, String)>,
    /// Error categories: severity, user-facing message and recovery suggestions. The entry
    /// named `"unknown"` applies when nothing matched (a built-in one when absent). Default:
    /// [`default_error_categories`].
    pub error_categories: HashMap<String, ErrorCategory>,
    /// An `agent_error` of this severity or worse closes its run (unless its data says
    /// `"fatal": false`; `"fatal": true` closes it whatever the severity). Default: high.
    pub closing_severity: Severity,
    /// How long a finished run is remembered (to flag late events) before eviction.
    /// Default: 60 seconds.
    pub finished_run_ttl: Duration,
    /// A live run with no event for this long is evicted (its publisher is presumed gone).
    /// Default: 30 minutes.
    pub idle_run_ttl: Duration,
    /// Runs remembered per user. An `agent_started` beyond it evicts the user's oldest
    /// finished run, else its least recently active live run (counted in `runs_evicted`).
    /// Default: 64.
    pub max_runs_per_user: usize,
    /// Tools tracked as running per run; a `tool_executing` beyond it forgets the oldest one.
    /// Default: 32.
    pub max_tools_per_run: usize,
    /// A test hook: when set, run tracking reads the time from this clock instead of the
    /// publish timestamp (so elapsed times and urgency are exact in tests, whatever the
    /// machine's speed). Default: none. [`HubConfig::clock`] drives the publish timestamps
    /// themselves (and so run tracking too); this one moves run tracking alone.
    pub clock: Option<ManualClock>,
}

impl Default for EnrichmentConfig {
    fn default() -> EnrichmentConfig {
        EnrichmentConfig {
            enabled: true,
            expected_run: Duration::from_secs(60),
            urgency_normal_at: 0.5,
            urgency_high_at: 1.0,
            tools: default_tool_catalog(),
            unknown_tool_category: "other".to_owned(),
            estimate_weight: 0.2,
            max_learned_tools: 1_024,
            error_patterns: default_error_patterns(),
            error_categories: default_error_categories(),
            closing_severity: Severity::High,
            finished_run_ttl: Duration::from_secs(60),
            idle_run_ttl: Duration::from_secs(1_800),
            max_runs_per_user: 64,
            max_tools_per_run: 32,
            clock: None,
        }
    }
}

/// The default tool catalog: common agent tools and what they are for.
///
/// | tool | category | purpose |
/// |---|---|---|
/// | `web_search`, `search` | `search` | Searching the web |
/// | `fetch_url`, `http_request`, `browser` | `web` | Reading a web page |
/// | `code_interpreter`, `python`, `run_code` | `code` | Running code |
/// | `read_file` | `files` | Reading a file |
/// | `write_file` | `files` | Writing a file |
/// | `sql_query`, `database_query` | `data` | Querying a database |
/// | `vector_search`, `retrieve_documents` | `retrieval` | Looking through documents |
/// | `calculator` | `math` | Calculating |
/// | `send_email` | `communication` | Sending an email |
pub fn default_tool_catalog() -> HashMap<String, ToolInfo> {
    let rows: [(&[&str], &str, &str); 9] = [
        (&["web_search", "search"], "search", "Searching the web"),
        (
            &["fetch_url", "http_request", "browser"],
            "web",
            "Reading a web page",
        ),
        (
            &["code_interpreter", "python", "run_code"],
            "code",
            "Running code",
        ),
        (&["read_file"], "files", "Reading a file"),
        (&["write_file"], "files", "Writing a file"),
        (
            &["sql_query", "database_query"],
            "data",
            "Querying a database",
        ),
        (
            &["vector_search", "retrieve_documents"],
            "retrieval",
            "Looking through documents",
        ),
        (&["calculator"], "math", "Calculating"),
        (&["send_email"], "communication", "Sending an email"),
    ];
    let mut m = HashMap::new();
    for (names, category, purpose) in rows {
        for n in names {
            m.insert((*n).to_owned(), ToolInfo::new(category, purpose));
        }
    }
    m
}

/// The default classification patterns, in match order (first match wins; words before
/// numbers, so `timeout_5000` is a timeout and not an HTTP 500):
///
/// | patterns | category |
/// |---|---|
/// | `internal`, `fatal`, `panic`, `crash`, `out_of_memory` | `internal` |
/// | `context_length`, `context_window`, `too_long` | `context_length` |
/// | `auth`, `unauthorized`, `forbidden`, `permission` | `auth` |
/// | `rate_limit`, `ratelimit`, `too_many_requests`, `quota` | `rate_limit` |
/// | `timeout`, `timed_out`, `deadline` | `timeout` |
/// | `network`, `connection`, `unavailable` | `network` |
/// | `tool` | `tool` |
/// | `validation`, `invalid`, `bad_request` | `validation` |
/// | `401`, `403` | `auth` |
/// | `429` | `rate_limit` |
/// | `408`, `504` | `timeout` |
/// | `502`, `503` | `network` |
/// | `400`, `422` | `validation` |
/// | `500` | `internal` |
pub fn default_error_patterns() -> Vec<(String, String)> {
    let rows: [(&[&str], &str); 14] = [
        (
            &["internal", "fatal", "panic", "crash", "out_of_memory"],
            "internal",
        ),
        (
            &["context_length", "context_window", "too_long"],
            "context_length",
        ),
        (&["auth", "unauthorized", "forbidden", "permission"], "auth"),
        (
            &["rate_limit", "ratelimit", "too_many_requests", "quota"],
            "rate_limit",
        ),
        (&["timeout", "timed_out", "deadline"], "timeout"),
        (&["network", "connection", "unavailable"], "network"),
        (&["tool"], "tool"),
        (&["validation", "invalid", "bad_request"], "validation"),
        (&["401", "403"], "auth"),
        (&["429"], "rate_limit"),
        (&["408", "504"], "timeout"),
        (&["502", "503"], "network"),
        (&["400", "422"], "validation"),
        (&["500"], "internal"),
    ];
    rows.iter()
        .flat_map(|(pats, cat)| pats.iter().map(|p| ((*p).to_owned(), (*cat).to_owned())))
        .collect()
}

/// The default error categories:
///
/// | category | severity | message |
/// |---|---|---|
/// | `internal` | critical | The agent stopped because of an internal error. |
/// | `auth` | high | The agent is not allowed to use a service it needs. |
/// | `context_length` | high | The conversation is too long for the agent to continue. |
/// | `unknown` | high | The agent ran into an unexpected problem. |
/// | `rate_limit` | medium | The agent reached a usage limit. |
/// | `timeout` | medium | The agent took too long to get an answer. |
/// | `network` | medium | The agent could not reach a service it needs. |
/// | `tool` | medium | One of the agent's tools failed. |
/// | `validation` | low | The request could not be processed as given. |
///
/// Each has two or three recovery suggestions (see `docs/events.md`).
pub fn default_error_categories() -> HashMap<String, ErrorCategory> {
    let rows: [(&str, Severity, &str, &[&str]); 9] = [
        (
            "internal",
            Severity::Critical,
            "The agent stopped because of an internal error.",
            &[
                "Try again in a few minutes",
                "Contact support if the problem persists",
            ],
        ),
        (
            "auth",
            Severity::High,
            "The agent is not allowed to use a service it needs.",
            &[
                "Sign in again",
                "Check that the connected account has the required permissions",
            ],
        ),
        (
            "context_length",
            Severity::High,
            "The conversation is too long for the agent to continue.",
            &[
                "Start a new conversation",
                "Shorten your request or attach less content",
            ],
        ),
        (
            "unknown",
            Severity::High,
            "The agent ran into an unexpected problem.",
            &["Try again", "Contact support if the problem persists"],
        ),
        (
            "rate_limit",
            Severity::Medium,
            "The agent reached a usage limit.",
            &[
                "Wait a minute and try again",
                "Upgrade your plan for higher limits",
            ],
        ),
        (
            "timeout",
            Severity::Medium,
            "The agent took too long to get an answer.",
            &["Try again", "Break the request into smaller steps"],
        ),
        (
            "network",
            Severity::Medium,
            "The agent could not reach a service it needs.",
            &[
                "Check your connection and try again",
                "Try again in a few minutes",
            ],
        ),
        (
            "tool",
            Severity::Medium,
            "One of the agent's tools failed.",
            &[
                "Try again",
                "Rephrase the request so the agent can take another approach",
            ],
        ),
        (
            "validation",
            Severity::Low,
            "The request could not be processed as given.",
            &["Check the input and try again", "Rephrase your request"],
        ),
    ];
    rows.iter()
        .map(|(name, severity, message, tips)| {
            (
                (*name).to_owned(),
                ErrorCategory::new(*severity, message, tips.iter().copied()),
            )
        })
        .collect()
}
