//! Server configuration: a TOML file, overridden by `AGENTCAST_*` environment variables,
//! overridden by command-line flags.
//!
//! The file is read first ([`Config::from_toml`]); then every [`Overrides`] field that is set
//! (clap fills each from its flag, else from its environment variable) replaces the file's
//! value. The fixed names any deployment tool may rely on are `--listen` / `AGENTCAST_LISTEN`,
//! `--jwt-secret` / `AGENTCAST_JWT_SECRET` and `--api-key` / `AGENTCAST_API_KEY`.
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! jwt_secret = "change-me-to-32-or-more-random-bytes"
//! api_key = "change-me-too"
//! # jwt_public_key = "/etc/agentcast/jwt.pub.pem"   # RS256 or ES256, detected from the key
//! # jwt_audience = "my-app"
//! # jwt_issuer = "https://auth.example.com"
//! jwt_leeway_secs = 30
//! jwt_max_lifetime_secs = 604800   # 7 days
//! log_format = "human"   # or "json"
//!
//! [limits]
//! max_connections = 100000
//!
//! [tiers.free]
//! connections_per_user = 5
//! subscriptions_per_connection = 16
//! history_len = 100
//! ```
//!
//! Every field has a default (stated on the field), so an empty file, or no file, is valid.
//! Unknown keys are refused so a typo does not silently keep a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::enrichment::EnrichmentSettings;
use crate::limits::Limits;
use crate::tier::Tiers;

/// Why the configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read: check the path given to `--config`.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema: the message names the key.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range: fix the named setting.
    #[error("invalid setting `{0}`: {1}")]
    Invalid(&'static str, String),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The server's configuration. See the [module docs](self).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Address and port of the one HTTP + WebSocket listener. Default: `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `SO_REUSEPORT` on the listener, so several node processes on one host share `listen`
    /// and the kernel spreads connections over them (every one of them must set it; see
    /// [`crate::listener`]). Default: false.
    pub reuse_port: bool,
    /// Shard workers write an event to a WebSocket client's socket themselves when nothing is
    /// queued before it and the socket has room, instead of waking the connection's task
    /// (see `agentcast_engine::sink`). Native WebSocket connections only. Default: true.
    pub direct_writes: bool,
    /// The listener's backlog: connections the kernel queues before they are accepted (a
    /// reconnect storm lands here; capped by `net.core.somaxconn`). Default: 4,096.
    pub listen_backlog: u32,
    /// HS256 secret for client JWTs. Default: none.
    pub jwt_secret: Option<String>,
    /// Publish API key (`Authorization: Bearer <key>`). Default: none.
    pub api_key: Option<String>,
    /// PEM file of an RSA (RS256) or P-256 (ES256) public key for client JWTs. Default: none.
    pub jwt_public_key: Option<PathBuf>,
    /// Required `aud` of client JWTs. Default: not checked.
    pub jwt_audience: Option<String>,
    /// Required `iss` of client JWTs. Default: not checked.
    pub jwt_issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds. Default: 30.
    pub jwt_leeway_secs: u64,
    /// Log format. Default: human.
    pub log_format: LogFormat,
    /// Log filter (`RUST_LOG` syntax; `RUST_LOG` wins when set). Default: `info`.
    pub log_level: String,
    /// Interval of WebSocket pings, announced in `welcome`. Default: 25,000 ms.
    pub heartbeat_ms: u64,
    /// A connection that sent nothing (not even a pong) for this long is closed. Default:
    /// 60,000 ms.
    pub idle_timeout_ms: u64,
    /// How long a graceful shutdown waits for connections to flush. Default: 5,000 ms.
    pub shutdown_grace_ms: u64,
    /// Engine shards (worker threads). Default: the number of cores.
    pub shards: Option<usize>,
    /// Threads of the I/O runtime (sockets, HTTP, WebSocket sessions). Default: the number of
    /// cores.
    pub io_threads: Option<usize>,
    /// Protective limits. See [`Limits`].
    pub limits: Limits,
    /// Per-tier limits. See [`Tiers`].
    pub tiers: Tiers,
    /// The health monitor. See [`HealthSettings`].
    pub health: HealthSettings,
    /// Escalation of unacknowledged critical events. See [`EscalationSettings`].
    pub escalation: EscalationSettings,
    /// Run tracking and enrichment rules. See [`EnrichmentSettings`].
    pub enrichment: EnrichmentSettings,
    /// Dev mode: enables the `/api/v1/dev/*` endpoints (demo token, simulated run, forced
    /// disconnect). Set by [`Config::enter_dev_mode`], never read from the file. Default: false.
    #[serde(skip)]
    pub dev_mode: bool,
    // --- Tables (issue 11: bounded user table and histories) ---
    /// Users with state (connected, or offline with history) on this node. Creating one
    /// more evicts the least recently active offline user (its next resume with `last_seq`
    /// gets a `gap`); see docs/operations.md. Default: 1,000,000.
    pub max_users: usize,
    /// History bytes of all users of this node; past it the least recently active offline
    /// users are evicted, then the oldest events of the user published to. Default: 2 GiB.
    pub max_history_bytes: usize,
    /// History bytes of one user; the oldest events are evicted to fit a new one (a resume
    /// gets a `gap`). Default: 8 MiB.
    pub max_history_bytes_per_user: usize,
    /// How long an offline user's state (seq, ack cursor, history) is kept after its last
    /// connection closed or its last event arrived. Default: 300,000 ms.
    pub user_ttl_ms: u64,
    /// Events kept for a user whose tier is unknown: one that never connected to this node
    /// (or was forgotten after `user_ttl_ms`). A user's tier `history_len` applies from its
    /// first connection on and stays after it disconnects. Default: the free tier's
    /// `history_len` (100).
    pub history_len: Option<usize>,
    // --- auth (H3) ---
    /// Longest lifetime of a client JWT, seconds: `exp` − `iat` (or `exp` − now without
    /// `iat`); a longer-lived token is refused with 401. Default: 604,800 (7 days).
    pub jwt_max_lifetime_secs: u64,
    // Overload (H1).
    /// Publishes each engine shard's command queue may hold; a publish to a shard whose queue
    /// is full is refused with 503 (nothing is published) and counted in
    /// `agentcast_publish_overloaded_total`. Default: 262,144.
    pub command_queue_capacity: usize,
    // --- cluster mode (issue 13; see docs/cluster.md) ---
    /// `redis://host:port[/db]` of the Redis that makes this node part of a cluster: seqs,
    /// history, ack cursors and idempotency keys live there, and events reach every node.
    /// Default: none (embedded: one node, everything in memory).
    pub redis_url: Option<String>,
    /// This node's name in the cluster. Default: `<hostname>-<8 hex digits>`, new each start.
    pub node_id: Option<String>,
    /// Prefix of every Redis key and channel of this cluster. Default: `ac`.
    pub redis_prefix: String,
    /// Longest a publish waits for Redis before it answers 503. Default: 1,500 ms.
    pub redis_publish_timeout_ms: u64,
    /// Redis unreachable for this long turns the `broker` component failed (`/readyz` 503).
    /// Default: 10,000 ms.
    pub broker_failed_after_ms: u64,
}

/// `[health]`: the engine's health monitor, canary and worker recovery (see
/// `agentcast_engine::health`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthSettings {
    /// How often components are checked and a canary event is sent through every shard.
    /// Default: 1,000 ms.
    pub interval_ms: u64,
    /// Send the canary. Default: true.
    pub canary: bool,
    /// Worker loop lag that makes a shard degraded. Default: 1,000 ms.
    pub stall_degraded_ms: u64,
    /// Worker loop lag that makes a shard failed. Default: 10,000 ms.
    pub stall_failed_ms: u64,
    /// Restarts of a panicked worker before the node turns failed. Default: 5.
    pub max_restarts: u32,
    /// First restart delay, doubled per consecutive restart (at most 10 s). Default: 100 ms.
    pub restart_backoff_ms: u64,
    /// Calm time after which a restarted worker's restart count resets. Default: 30,000 ms.
    pub stable_after_ms: u64,
    /// Forced closes per second that make delivery degraded. Default: 100.
    pub forced_close_rate: f64,
    /// Unacknowledged critical events that make delivery degraded. Default: 10,000.
    pub unacked_critical_max: u64,
    /// Queued shard commands that make publish degraded. Default: 100,000.
    pub queue_depth_max: usize,
    /// Enables `POST /api/v1/debug/fault` (API key required) to panic, stall or silence a
    /// shard on purpose: for testing alerting and recovery, never in production.
    /// Default: false.
    pub fault_injection: bool,
}

impl Default for HealthSettings {
    fn default() -> HealthSettings {
        HealthSettings {
            interval_ms: 1_000,
            canary: true,
            stall_degraded_ms: 1_000,
            stall_failed_ms: 10_000,
            max_restarts: 5,
            restart_backoff_ms: 100,
            stable_after_ms: 30_000,
            forced_close_rate: 100.0,
            unacked_critical_max: 10_000,
            queue_depth_max: 100_000,
            fault_injection: false,
        }
    }
}

impl HealthSettings {
    /// The engine's form.
    pub fn to_engine(&self) -> agentcast_engine::HealthConfig {
        let mut h = agentcast_engine::HealthConfig::default();
        h.interval = Some(Duration::from_millis(self.interval_ms.max(10)));
        h.canary = self.canary;
        h.stall_degraded = Duration::from_millis(self.stall_degraded_ms);
        h.stall_failed = Duration::from_millis(self.stall_failed_ms);
        h.max_restarts = self.max_restarts;
        h.restart_backoff = Duration::from_millis(self.restart_backoff_ms);
        h.stable_after = Duration::from_millis(self.stable_after_ms);
        h.forced_close_rate = self.forced_close_rate;
        h.unacked_critical_max = self.unacked_critical_max;
        h.queue_depth_max = self.queue_depth_max;
        h.fault_injection = self.fault_injection;
        h
    }
}

/// `[escalation]`: what happens to a critical event (`agent_started`, `agent_completed`,
/// `agent_error`) nobody acknowledged in time. Each one is counted, logged at warn level
/// (target `agentcast::escalation`; aggregated: at most one line per `log_interval_ms`), and
/// POSTed to `webhook_url` when set (see `crate::escalation`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EscalationSettings {
    /// How long a critical user event may wait for its ack. Default: 30,000 ms.
    pub ack_deadline_ms: u64,
    /// `http://host:port/path` that receives one JSON POST per escalation. Default: none.
    pub webhook_url: Option<String>,
    /// Attempts per escalation (the first included); 5xx, timeouts and connection errors are
    /// retried with a doubling delay from 200 ms. Default: 3.
    pub webhook_attempts: u32,
    /// Timeout of one attempt. Default: 2,000 ms.
    pub webhook_timeout_ms: u64,
    /// Escalations waiting for the webhook; beyond it they are logged and counted as
    /// dropped, and delivery never waits. Default: 1,024.
    pub webhook_queue: usize,
    // --- escalation amplification bounds (H5 ops) ---
    /// Escalations of users whose state never had a connection: `"escalate"` or `"skip"`
    /// (counted in `escalations_skipped`). Default: escalate. See [`NeverConnected`].
    pub never_connected: NeverConnected,
    /// Webhook POSTs in flight at once; the others wait in `webhook_queue`. Default: 16.
    pub webhook_concurrency: usize,
    /// At most one escalation log line per this interval (the rest are summarised with a
    /// count). Default: 1,000 ms.
    pub log_interval_ms: u64,
}

/// `[escalation] never_connected`: what an overdue critical event of a user that never
/// connected becomes.
///
/// The default is `escalate`. The engine knows "never connected" only since the user's state
/// was created (it lives for the user's TTL and is lost at a restart), so `skip` would also
/// silence a real user who connected before a restart or an eviction and has not come back
/// yet, which is exactly who an escalation is for. The amplification a flood of such events
/// could cause is bounded anyway (aggregated log, bounded webhook). Choose `skip` when events
/// are published for users who may never open a client (and a webhook should not hear of
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NeverConnected {
    /// Escalate them like any other user's (the default).
    #[default]
    Escalate,
    /// Do not escalate them; count them in `escalations_skipped`.
    Skip,
}

impl Default for EscalationSettings {
    fn default() -> EscalationSettings {
        EscalationSettings {
            ack_deadline_ms: 30_000,
            webhook_url: None,
            webhook_attempts: 3,
            webhook_timeout_ms: 2_000,
            webhook_queue: 1_024,
            never_connected: NeverConnected::Escalate,
            webhook_concurrency: 16,
            log_interval_ms: 1_000,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            reuse_port: false,
            direct_writes: true,
            listen_backlog: 4096,
            jwt_secret: None,
            api_key: None,
            jwt_public_key: None,
            jwt_audience: None,
            jwt_issuer: None,
            jwt_leeway_secs: 30,
            log_format: LogFormat::Human,
            log_level: "info".to_owned(),
            heartbeat_ms: 25_000,
            idle_timeout_ms: 60_000,
            shutdown_grace_ms: 5_000,
            shards: None,
            io_threads: None,
            limits: Limits::default(),
            tiers: Tiers::default(),
            health: HealthSettings::default(),
            escalation: EscalationSettings::default(),
            enrichment: EnrichmentSettings::default(),
            dev_mode: false,
            max_users: 1_000_000,
            max_history_bytes: 2 << 30,
            max_history_bytes_per_user: 8 << 20,
            user_ttl_ms: 300_000,
            history_len: None,
            jwt_max_lifetime_secs: 7 * 24 * 3600,
            command_queue_capacity: 1 << 18,
            redis_url: None,
            node_id: None,
            redis_prefix: "ac".to_owned(),
            redis_publish_timeout_ms: 1_500,
            broker_failed_after_ms: 10_000,
        }
    }
}

/// Settings given by flag or environment; each `Some` replaces the file's value.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "AGENTCAST_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Listen address (address:port).
    #[arg(long, env = "AGENTCAST_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// Share the listen port with other agentcast processes (SO_REUSEPORT); `--reuse-port`
    /// alone means true.
    #[arg(
        long,
        env = "AGENTCAST_REUSE_PORT",
        global = true,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub reuse_port: Option<bool>,
    /// Shard workers write events to WebSocket sockets themselves when they can;
    /// `--direct-writes false` leaves every write to the connection's task.
    #[arg(
        long,
        env = "AGENTCAST_DIRECT_WRITES",
        global = true,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub direct_writes: Option<bool>,
    /// The listener's backlog (connections queued before accept).
    #[arg(long, env = "AGENTCAST_LISTEN_BACKLOG", global = true)]
    pub listen_backlog: Option<u32>,
    /// HS256 secret for client JWTs.
    #[arg(
        long,
        env = "AGENTCAST_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// Publish API key.
    #[arg(long, env = "AGENTCAST_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM public key (RS256 or ES256) for client JWTs.
    #[arg(long, env = "AGENTCAST_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,
    /// Required JWT audience.
    #[arg(long, env = "AGENTCAST_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,
    /// Required JWT issuer.
    #[arg(long, env = "AGENTCAST_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,
    /// Allowed clock skew on exp/nbf, seconds.
    #[arg(long, env = "AGENTCAST_JWT_LEEWAY_SECS", global = true)]
    pub jwt_leeway_secs: Option<u64>,
    /// Log format.
    #[arg(long, env = "AGENTCAST_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `agentcast_server=debug`.
    #[arg(long, env = "AGENTCAST_LOG_LEVEL", global = true)]
    pub log_level: Option<String>,
    /// WebSocket ping interval, ms.
    #[arg(long, env = "AGENTCAST_HEARTBEAT_MS", global = true)]
    pub heartbeat_ms: Option<u64>,
    /// Idle timeout, ms.
    #[arg(long, env = "AGENTCAST_IDLE_TIMEOUT_MS", global = true)]
    pub idle_timeout_ms: Option<u64>,
    /// Maximum WebSocket connections on this node.
    #[arg(long, env = "AGENTCAST_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Webhook URL (http://) receiving unacknowledged critical events.
    #[arg(long, env = "AGENTCAST_WEBHOOK_URL", global = true)]
    pub webhook_url: Option<String>,
    // --- Tables (issue 11) ---
    /// Users with state on this node (offline ones are evicted past it).
    #[arg(long, env = "AGENTCAST_MAX_USERS", global = true)]
    pub max_users: Option<usize>,
    /// History bytes of all users of this node.
    #[arg(long, env = "AGENTCAST_MAX_HISTORY_BYTES", global = true)]
    pub max_history_bytes: Option<usize>,
    /// History bytes of one user.
    #[arg(long, env = "AGENTCAST_MAX_HISTORY_BYTES_PER_USER", global = true)]
    pub max_history_bytes_per_user: Option<usize>,
    /// How long an offline user's state is kept, ms.
    #[arg(long, env = "AGENTCAST_USER_TTL_MS", global = true)]
    pub user_ttl_ms: Option<u64>,
    /// Events kept for a user whose tier is unknown (never connected).
    #[arg(long, env = "AGENTCAST_HISTORY_LEN", global = true)]
    pub history_len: Option<usize>,
    // --- auth (H3) ---
    /// Longest accepted client JWT lifetime (exp - iat), seconds.
    #[arg(long, env = "AGENTCAST_JWT_MAX_LIFETIME_SECS", global = true)]
    pub jwt_max_lifetime_secs: Option<u64>,
    // Overload (H1).
    /// Publishes each engine shard's queue may hold before publishes get 503.
    #[arg(long, env = "AGENTCAST_COMMAND_QUEUE_CAPACITY", global = true)]
    pub command_queue_capacity: Option<usize>,
    // Cluster mode (issue 13).
    /// `redis://host:port` of the cluster's Redis: turns cluster mode on.
    #[arg(long, env = "AGENTCAST_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// This node's name in the cluster (default: hostname and 8 random hex digits).
    #[arg(long, env = "AGENTCAST_NODE_ID", global = true)]
    pub node_id: Option<String>,
    // H4 (before authentication):
    /// Largest HTTP request head, bytes (`limits.max_request_head_bytes`).
    #[arg(long, env = "AGENTCAST_MAX_REQUEST_HEAD_BYTES", global = true)]
    pub max_request_head_bytes: Option<usize>,
    /// Connections not yet past their request head (`limits.max_pending_connections`).
    #[arg(long, env = "AGENTCAST_MAX_PENDING_CONNECTIONS", global = true)]
    pub max_pending_connections: Option<usize>,
    /// Time to send a request head, ms (`limits.handshake_timeout_ms`).
    #[arg(long, env = "AGENTCAST_HANDSHAKE_TIMEOUT_MS", global = true)]
    pub handshake_timeout_ms: Option<u64>,
    // --- escalation (H5 ops) ---
    /// Escalate or skip overdue critical events of users that never connected.
    #[arg(long, env = "AGENTCAST_ESCALATION_NEVER_CONNECTED", global = true)]
    pub escalation_never_connected: Option<NeverConnected>,
    /// Webhook POSTs in flight at once.
    #[arg(long, env = "AGENTCAST_WEBHOOK_CONCURRENCY", global = true)]
    pub webhook_concurrency: Option<usize>,
    /// At most one escalation log line per this many ms.
    #[arg(long, env = "AGENTCAST_ESCALATION_LOG_INTERVAL_MS", global = true)]
    pub escalation_log_interval_ms: Option<u64>,
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads the file named by `overrides.config` (if any), then applies the overrides.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut cfg = match &overrides.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Config::from_toml(&text, path)?
            }
            None => Config::default(),
        };
        cfg.apply(overrides);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Replaces every setting that `o` gives.
    pub fn apply(&mut self, o: &Overrides) {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &o.$field { self.$field = v.clone(); } )* };
            (opt $($field:ident),*) => { $( if let Some(v) = &o.$field { self.$field = Some(v.clone()); } )* };
        }
        set!(
            listen,
            reuse_port,
            direct_writes,
            listen_backlog,
            jwt_leeway_secs,
            log_format,
            log_level,
            heartbeat_ms,
            idle_timeout_ms
        );
        set!(opt jwt_secret, api_key, jwt_public_key, jwt_audience, jwt_issuer);
        if let Some(n) = o.max_connections {
            self.limits.max_connections = n;
        }
        if let Some(url) = &o.webhook_url {
            self.escalation.webhook_url = Some(url.clone());
        }
        set!(
            max_users,
            max_history_bytes,
            max_history_bytes_per_user,
            user_ttl_ms
        );
        set!(opt history_len);
        // auth (H3)
        set!(jwt_max_lifetime_secs);
        if let Some(n) = o.command_queue_capacity {
            self.command_queue_capacity = n;
        }
        if let Some(u) = &o.redis_url {
            self.redis_url = Some(u.clone());
        }
        if let Some(n) = &o.node_id {
            self.node_id = Some(n.clone());
        }
        // H4 (before authentication):
        if let Some(n) = o.max_request_head_bytes {
            self.limits.max_request_head_bytes = n;
        }
        if let Some(n) = o.max_pending_connections {
            self.limits.max_pending_connections = n;
        }
        if let Some(ms) = o.handshake_timeout_ms {
            self.limits.handshake_timeout_ms = ms;
        }
        // Escalation (H5 ops).
        if let Some(p) = o.escalation_never_connected {
            self.escalation.never_connected = p;
        }
        if let Some(n) = o.webhook_concurrency {
            self.escalation.webhook_concurrency = n;
        }
        if let Some(ms) = o.escalation_log_interval_ms {
            self.escalation.log_interval_ms = ms;
        }
    }

    /// Checks ranges that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_ms == 0 {
            return Err(ConfigError::Invalid("heartbeat_ms", "must be > 0".into()));
        }
        if let Some(url) = &self.redis_url
            && redis::parse_redis_url(url).is_none()
        {
            return Err(ConfigError::Invalid(
                "redis_url",
                format!("`{url}` is not a redis:// URL"),
            ));
        }
        if self.redis_publish_timeout_ms == 0 || self.redis_publish_timeout_ms > 60_000 {
            return Err(ConfigError::Invalid(
                "redis_publish_timeout_ms",
                "must be between 1 and 60000".into(),
            ));
        }
        if self.command_queue_capacity == 0 {
            return Err(ConfigError::Invalid(
                "command_queue_capacity",
                "must be > 0".into(),
            ));
        }
        if self.idle_timeout_ms < self.heartbeat_ms {
            return Err(ConfigError::Invalid(
                "idle_timeout_ms",
                "must be at least heartbeat_ms".into(),
            ));
        }
        if matches!(&self.jwt_secret, Some(s) if s.is_empty()) {
            return Err(ConfigError::Invalid(
                "jwt_secret",
                "must not be empty".into(),
            ));
        }
        if matches!(&self.api_key, Some(s) if s.is_empty()) {
            return Err(ConfigError::Invalid("api_key", "must not be empty".into()));
        }
        // auth (H3): the same rule `Authenticator::from_config` (so `run`) enforces.
        if let Some(s) = &self.jwt_secret {
            if s.len() < crate::auth::MIN_SECRET_BYTES && !self.dev_mode {
                return Err(ConfigError::Invalid(
                    "jwt_secret",
                    crate::auth::KeyError::ShortSecret(s.len()).to_string(),
                ));
            }
        }
        if self.jwt_max_lifetime_secs == 0 {
            return Err(ConfigError::Invalid(
                "jwt_max_lifetime_secs",
                "must be > 0".into(),
            ));
        }
        if let Some(url) = &self.escalation.webhook_url {
            crate::escalation::WebhookTarget::parse(url)
                .map_err(|e| ConfigError::Invalid("escalation.webhook_url", e))?;
        }
        if self.escalation.webhook_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "escalation.webhook_concurrency",
                "must be at least 1".into(),
            ));
        }
        if self.escalation.log_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "escalation.log_interval_ms",
                "must be at least 1".into(),
            ));
        }
        self.enrichment
            .to_engine()
            .map_err(|e| ConfigError::Invalid("enrichment", e))?;
        if self.health.stall_failed_ms <= self.health.stall_degraded_ms {
            return Err(ConfigError::Invalid(
                "health.stall_failed_ms",
                "must be greater than health.stall_degraded_ms".into(),
            ));
        }
        if self.max_users == 0 {
            return Err(ConfigError::Invalid("max_users", "must be > 0".into()));
        }
        if self.max_history_bytes_per_user > self.max_history_bytes {
            return Err(ConfigError::Invalid(
                "max_history_bytes_per_user",
                "must not exceed max_history_bytes".into(),
            ));
        }
        if self.user_ttl_ms == 0 {
            return Err(ConfigError::Invalid("user_ttl_ms", "must be > 0".into()));
        }
        self.limits.validate()
    }

    /// Events kept for a user whose tier is unknown: `history_len`, else the free tier's.
    pub fn default_history_len(&self) -> usize {
        self.history_len.unwrap_or(self.tiers.free.history_len)
    }

    /// Whether neither a JWT key nor an API key is configured: `serve` then runs in dev mode
    /// (see [`Config::enter_dev_mode`]).
    pub fn needs_dev_mode(&self) -> bool {
        self.jwt_secret.is_none() && self.jwt_public_key.is_none() && self.api_key.is_none()
    }

    /// Generates a random JWT secret and API key, turns [`Config::dev_mode`] on, and returns
    /// the secret and key.
    ///
    /// Dev mode mints tokens for anyone who asks (`/api/v1/dev/token`), so it runs only on a
    /// loopback listen address (127.0.0.0/8 or ::1): any other address is refused with
    /// [`DevModeRefused`] and nothing changes. The binary exits with code 2 on it.
    pub fn enter_dev_mode(&mut self) -> Result<(String, String), DevModeRefused> {
        if !is_loopback(self.listen.ip()) {
            return Err(DevModeRefused(self.listen));
        }
        let secret = random_token(32);
        let key = random_token(32);
        self.jwt_secret = Some(secret.clone());
        self.api_key = Some(key.clone());
        self.dev_mode = true;
        Ok((secret, key))
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

// H4 (dev mode off loopback):

/// Dev mode was asked for (no secret, no key) on an address that is not loopback.
#[derive(Debug, Clone, Error)]
#[error(
    "refusing to start in dev mode on {0}: with no jwt_secret, jwt_public_key or api_key \
     configured, agentcast runs in dev mode, which hands out tokens to anyone, so it listens \
     only on a loopback address (127.0.0.1, ::1). Configure --jwt-secret and --api-key \
     (AGENTCAST_JWT_SECRET, AGENTCAST_API_KEY), or listen on 127.0.0.1"
)]
pub struct DevModeRefused(pub SocketAddr);

/// Whether `ip` is a loopback address: 127.0.0.0/8, ::1, or ::ffff:127.x.x.x.
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// `len` random alphanumeric characters from the OS-seeded thread RNG.
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_are_overridden_by_flags() {
        let mut cfg = Config::from_toml(
            "listen = \"0.0.0.0:9000\"\napi_key = \"k\"\n[limits]\nmax_connections = 7\n[tiers.free]\nconnections_per_user = 2\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(cfg.limits.max_connections, 7);
        assert_eq!(cfg.tiers.free.connections_per_user, 2);
        assert_eq!(cfg.tiers.free.history_len, 100);
        cfg.apply(&Overrides {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            ..Overrides::default()
        });
        assert_eq!(cfg.listen.port(), 1);
        assert_eq!(cfg.api_key.as_deref(), Some("k"));
    }

    #[test]
    fn table_bounds_come_from_the_file_and_flags_override_them() {
        let mut cfg = Config::from_toml(
            "max_users = 10\nmax_history_bytes = 4096\nuser_ttl_ms = 1000\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(cfg.max_users, 10);
        assert_eq!(cfg.default_history_len(), cfg.tiers.free.history_len);
        cfg.apply(&Overrides {
            max_users: Some(20),
            max_history_bytes_per_user: Some(8192),
            history_len: Some(7),
            ..Overrides::default()
        });
        assert_eq!(cfg.max_users, 20);
        assert_eq!(cfg.user_ttl_ms, 1000);
        assert_eq!(cfg.default_history_len(), 7);
        let err = cfg.validate().unwrap_err();
        assert!(
            err.to_string().contains("max_history_bytes_per_user"),
            "{err}"
        );
    }

    #[test]
    fn command_queue_capacity_comes_from_the_file_and_the_flag_wins() {
        let mut cfg =
            Config::from_toml("command_queue_capacity = 1000\n", Path::new("x.toml")).unwrap();
        assert_eq!(cfg.command_queue_capacity, 1000);
        assert_eq!(Config::default().command_queue_capacity, 262_144);
        cfg.apply(&Overrides {
            command_queue_capacity: Some(16),
            ..Overrides::default()
        });
        assert_eq!(cfg.command_queue_capacity, 16);
        cfg.command_queue_capacity = 0;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn pre_authentication_limits_come_from_the_file_and_the_overrides() {
        let mut cfg = Config::from_toml(
            "[limits]\nmax_request_head_bytes = 20000\nmax_pending_connections = 9\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(cfg.limits.max_request_head_bytes, 20_000);
        assert_eq!(cfg.limits.max_pending_connections, 9);
        assert_eq!(cfg.limits.handshake_timeout_ms, 5_000);
        cfg.apply(&Overrides {
            max_pending_connections: Some(3),
            handshake_timeout_ms: Some(700),
            ..Overrides::default()
        });
        assert_eq!(cfg.limits.max_pending_connections, 3);
        assert_eq!(cfg.limits.handshake_timeout_ms, 700);
        assert_eq!(cfg.limits.max_request_head_bytes, 20_000);
        cfg.limits.max_request_head_bytes = 100;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn dev_mode_is_entered_only_on_loopback() {
        for ok in [
            "127.0.0.1:0",
            "127.3.2.1:80",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:1",
        ] {
            let mut cfg = Config {
                listen: ok.parse().unwrap(),
                ..Config::default()
            };
            assert!(cfg.enter_dev_mode().is_ok(), "{ok}");
            assert!(cfg.dev_mode && cfg.api_key.is_some());
        }
        for bad in [
            "0.0.0.0:0",
            "[::]:0",
            "10.1.2.3:8080",
            "[::ffff:10.0.0.1]:1",
        ] {
            let mut cfg = Config {
                listen: bad.parse().unwrap(),
                ..Config::default()
            };
            let err = cfg.enter_dev_mode().unwrap_err();
            assert!(err.to_string().contains("loopback"), "{err}");
            assert!(!cfg.dev_mode && cfg.api_key.is_none() && cfg.jwt_secret.is_none());
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("listn = \"x\"", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }
}
