//! agentcast-server: the one-port WebSocket + HTTP gateway around [`agentcast_engine`].
//!
//! Browsers and apps connect to `GET /ws` with a JWT and receive their user's agent events;
//! backends publish with `POST /api/v1/publish`. The binary (`agentcast`) only parses its
//! command line and calls [`run`], which tests call too, on `127.0.0.1:0`:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let mut config = agentcast_server::Config::default();
//! config.jwt_secret = Some("a-secret-of-at-least-32-bytes-long".into());
//! config.api_key = Some("key".into());
//! agentcast_server::run(listener, config, async { /* a shutdown signal */ }).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`server`]: the accept loop, HTTP/1.1 connections, graceful shutdown.
//! - [`http`](crate::http) (private): routing, the publish API, operations endpoints.
//! - [`ws`]: the upgrade handshake, the sans-IO frame [`codec`](ws::codec), abuse guards and
//!   the per-connection session task.
//! - `client` (private): what both client transports share: the token and `last_seq` of a
//!   connect request, admission (limits, tiers, the broker's open), the welcome, token
//!   expiry, subscriptions.
//! - `sse` (private): `GET /sse`, server-sent events as a second client transport.
//! - [`auth`]: client JWT verification, token minting, the API key.
//! - [`tier`]: per-tier limits and the per-user connection registry.
//! - [`limits`]: the node's protective limits.
//! - `pending` (private): the bounded registry of connections waiting for a request head.
//! - [`idempotency`]: the bounded idempotency-key window of the publish API.
//! - [`metrics`]: server counters, Prometheus and JSON exposition.
//! - [`config`]: TOML + environment + flags.
//! - [`cli`]: the command line of the binary.
//! - [`bench`]: the load generator (`agentcast bench`).
//! - [`logging`]: tracing setup.
//! - `state` (private): what every connection task shares.

pub mod auth;
pub mod bench;
pub mod cli;
mod client;
mod cluster;
pub mod config;
pub mod enrichment;
pub mod escalation;
pub mod exposition;
mod http;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod metrics;
mod pending;
pub mod server;
mod sse;
mod state;
pub mod tier;
pub mod ws;

pub use config::Config;
pub use server::{ServerError, run};

/// Entry points of the crate's private parsers for the fuzz targets in `fuzz/` (not an API:
/// hidden from the docs and free to change).
#[doc(hidden)]
pub mod fuzzing {
    /// What the `GET /ws` handshake extracts before authentication: the `Sec-WebSocket-Key`,
    /// `last_seq` (`None` = resume from the ack cursor) and the token.
    pub type UpgradeParts = (String, Option<u64>, String);

    /// Runs the sans-IO part of the `GET /ws` handshake: `Ok` with what it extracted, or the
    /// refusal's HTTP status and `error` message.
    pub fn upgrade_request<B>(req: &http::Request<B>) -> Result<UpgradeParts, (u16, String)> {
        match crate::ws::handshake::parse_upgrade(req) {
            Ok(u) => {
                let last_seq = match u.resume {
                    agentcast_engine::Resume::After(n) => Some(n),
                    _ => None,
                };
                Ok((u.key, last_seq, u.token))
            }
            Err(r) => Err((r.status.as_u16(), r.message)),
        }
    }

    /// Parses what a cluster node reads from Redis: a user-event message, a fan-out message,
    /// a channel name and a Stream entry. Returns how many parsed (never panics).
    pub fn cluster_message(bytes: &[u8]) -> usize {
        use crate::cluster::wire;
        let mut n = 0;
        n += usize::from(wire::parse_user_message(bytes).is_some());
        n += usize::from(wire::parse_fanout_message(bytes).is_some());
        let text = String::from_utf8_lossy(bytes);
        n += usize::from(wire::user_of_channel("ac", &text).is_some());
        let (id, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let fields: Vec<(Vec<u8>, Vec<u8>)> = rest
            .split(' ')
            .collect::<Vec<_>>()
            .chunks(2)
            .map(|c| {
                (
                    c[0].as_bytes().to_vec(),
                    c.get(1).unwrap_or(&"").as_bytes().to_vec(),
                )
            })
            .collect();
        if let Some(e) = wire::parse_entry(id, &fields) {
            // Merged deltas are rebuilt from untrusted parts too.
            let entry = e.into_history();
            n += 1 + usize::from(entry.seq_from() < entry.seq);
        }
        n
    }

    /// What `GET /sse` extracts before authentication: where delivery resumes (`None` = from
    /// the ack cursor), the token and the channel names of `?channels=`.
    pub type SseParts = (Option<u64>, String, Vec<String>);

    /// Runs the sans-IO part of `GET /sse`: `Ok` with what it extracted, or the refusal's
    /// HTTP status and `error` message.
    pub fn sse_request<B>(req: &http::Request<B>) -> Result<SseParts, (u16, String)> {
        match crate::sse::request::parse_sse(req) {
            Ok(r) => {
                let resume = match r.resume {
                    agentcast_engine::Resume::After(n) => Some(n),
                    _ => None,
                };
                let channels = r.channels.iter().map(|c| c.as_str().to_owned()).collect();
                Ok((resume, r.token, channels))
            }
            Err(r) => Err((r.status.as_u16(), r.message)),
        }
    }

    /// Parses a `POST /api/v1/ack` body: the seq, or the refusal's status and message.
    pub fn ack_body(body: &[u8]) -> Result<u64, (u16, String)> {
        crate::http::ack::parse_ack(body).map_err(|r| (r.status.as_u16(), r.message))
    }

    /// The percent-decoded value of `name` in a query string (first occurrence).
    pub fn query_param(query: &str, name: &str) -> Option<String> {
        crate::client::request::query_param(query, name).map(|c| c.into_owned())
    }
}
