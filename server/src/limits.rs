//! Limits that protect the node, each configurable (`[limits]` in the config file), counted in
//! [`crate::metrics`] and answered with a clear status or close code:
//!
//! | limit | default | when exceeded |
//! |---|---|---|
//! | `max_message_bytes`: one client WebSocket message | 4 KiB | `error` message `too_large`, payload discarded unbuffered, connection stays open |
//! | `max_body_bytes`: one publish request body | 1 MiB | HTTP 413 |
//! | `max_batch_items`: items of one batch publish | 1,000 | HTTP 413 |
//! | `handshake_timeout_ms`: time to send a complete HTTP request head (and body) | 5 s | connection dropped (408 for a late body) |
//! | `max_request_head_bytes`: request line + headers of one HTTP request | 16 KiB | HTTP 431 (empty body, from hyper), connection closed |
//! | `max_pending_connections`: connections that have not finished a request head | 1,024 | the one pending longest is closed (see `server/src/pending.rs`) |
//! | `max_connections`: WebSocket connections on this node | 100,000 | HTTP 503 before the upgrade |
//! | `rate_per_sec` / `rate_burst`: client messages per connection (token bucket) | 20/s, burst 40 | `error` `rate_limited`, message ignored |
//! | `abuse_max_errors` within `abuse_window_ms`: error replies to one connection | 20 in 10 s | close 1008 (policy violation) |
//! | `max_token_bytes`: length of a client JWT | 8 KiB | HTTP 401 |
//! | `write_timeout_ms`: one socket write to a client | 10 s | connection dropped |
//! | `idempotency_window_secs` / `idempotency_max_keys` | 300 s / 100,000 | oldest key forgotten |
//!
//! Connections per user, subscriptions per connection and history length are per tier: see
//! [`crate::tier`].

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// Protective limits. Every field states its default. See the [module docs](self).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// Largest client WebSocket message, bytes. Default: 4,096.
    pub max_message_bytes: usize,
    /// Largest publish request body, bytes. Default: 1 MiB.
    pub max_body_bytes: usize,
    /// Most items in one batch publish. Default: 1,000.
    pub max_batch_items: usize,
    /// Time allowed to send a request head (and a publish body). Default: 5,000 ms.
    pub handshake_timeout_ms: u64,
    /// WebSocket connections this node accepts. Default: 100,000.
    pub max_connections: usize,
    /// Client messages per second per connection (token bucket refill). Default: 20.
    pub rate_per_sec: f64,
    /// Token bucket size (burst). Default: 40.
    pub rate_burst: f64,
    /// Error replies within `abuse_window_ms` that close a connection with 1008. Default: 20.
    pub abuse_max_errors: u32,
    /// The abuse window. Default: 10,000 ms.
    pub abuse_window_ms: u64,
    /// Longest client JWT accepted, bytes. Default: 8,192.
    pub max_token_bytes: usize,
    /// Longest a single socket write to a client may block. Default: 10,000 ms.
    pub write_timeout_ms: u64,
    /// How long an idempotency key is remembered. Default: 300 s.
    pub idempotency_window_secs: u64,
    /// Most idempotency keys remembered; the oldest is forgotten first. Default: 100,000.
    pub idempotency_max_keys: usize,
    // H4 (before authentication):
    /// Largest request head (request line and headers) of one HTTP request, bytes; a larger
    /// one is answered 431 and the connection closed. At least 1,024. Default: 16,384.
    pub max_request_head_bytes: usize,
    /// Connections accepted that have not finished a request head (including keep-alive
    /// connections between requests); beyond it the one pending longest is closed. Default:
    /// 1,024.
    pub max_pending_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 4096,
            max_body_bytes: 1 << 20,
            max_batch_items: 1000,
            handshake_timeout_ms: 5_000,
            max_connections: 100_000,
            rate_per_sec: 20.0,
            rate_burst: 40.0,
            abuse_max_errors: 20,
            abuse_window_ms: 10_000,
            max_token_bytes: 8192,
            write_timeout_ms: 10_000,
            idempotency_window_secs: 300,
            idempotency_max_keys: 100_000,
            max_request_head_bytes: 16 * 1024,
            max_pending_connections: 1024,
        }
    }
}

impl Limits {
    /// Checks that each limit is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name, why: &str| Err(ConfigError::Invalid(name, why.to_owned()));
        if self.max_message_bytes < 64 {
            return bad("limits.max_message_bytes", "must be at least 64");
        }
        if !(self.rate_per_sec > 0.0 && self.rate_burst >= 1.0) {
            return bad("limits.rate_per_sec", "rate must be > 0 and burst >= 1");
        }
        if self.handshake_timeout_ms == 0 || self.write_timeout_ms == 0 {
            return bad("limits.handshake_timeout_ms", "timeouts must be > 0");
        }
        if self.max_request_head_bytes < 1024 {
            return bad("limits.max_request_head_bytes", "must be at least 1024");
        }
        if self.max_pending_connections == 0 {
            return bad("limits.max_pending_connections", "must be > 0");
        }
        if self.abuse_max_errors == 0 {
            return bad("limits.abuse_max_errors", "must be > 0");
        }
        Ok(())
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// The abuse window.
    pub fn abuse_window(&self) -> Duration {
        Duration::from_millis(self.abuse_window_ms)
    }
}
