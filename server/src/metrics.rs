//! Server-side counters and their exposition: Prometheus text (`GET /metrics`) and JSON
//! (`GET /api/v1/stats`), each joining these counters with the engine's [`Stats`].
//!
//! Every counter is a `Relaxed` atomic: they are independent monotonic tallies (and two
//! gauges) read for display, and publish no other memory. The exposition is rendered by hand:
//! a fixed list of names, no labels beyond `priority`, so no metrics crate is needed yet.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use agentcast_engine::{Priority, Stats};

macro_rules! server_counters {
    ($( $(#[doc = $doc:literal])* $name:ident : $kind:literal ),* $(,)?) => {
        /// Counters of the server layer. See the [module docs](self).
        #[derive(Debug, Default)]
        pub struct ServerMetrics {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
        }

        impl ServerMetrics {
            /// `(name, kind, help, value)` of every counter.
            pub fn snapshot(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
                vec![ $( (stringify!($name), $kind, concat!($($doc),*), self.$name.load(Relaxed)), )* ]
            }
        }
    };
}

server_counters! {
    /// HTTP requests received (upgrades included).
    http_requests: "counter",
    /// WebSocket upgrades completed.
    ws_accepted: "counter",
    /// Gauge: WebSocket connections open.
    ws_open: "gauge",
    /// Upgrades refused with 401 (token).
    ws_rejected_auth: "counter",
    /// Upgrades refused with 400/405/426 (bad handshake or last_seq).
    ws_rejected_handshake: "counter",
    /// Upgrades refused with 503 (node connection limit or shutting down).
    ws_rejected_capacity: "counter",
    /// Upgrades refused with 429 (per-user connection limit of the tier).
    ws_rejected_user_limit: "counter",
    /// Connections dropped because the request head did not arrive in time.
    handshake_timeouts: "counter",
    /// Client messages received (text and binary).
    client_messages: "counter",
    /// Error replies sent to clients (bad message, forbidden, rate limited, too large).
    client_errors: "counter",
    /// Client messages over max_message_bytes.
    client_oversize: "counter",
    /// Client messages refused by the rate limit.
    client_rate_limited: "counter",
    /// Connections closed with 1008 for sustained abuse.
    abuse_closes: "counter",
    /// Critical events escalated because nobody acknowledged them in time.
    escalations: "counter",
    /// Escalations POSTed to the webhook (2xx).
    webhook_delivered: "counter",
    /// Escalations the webhook never accepted (attempts exhausted or 4xx).
    webhook_failed: "counter",
    /// Escalations not posted because the webhook queue was full.
    webhook_dropped: "counter",
    /// WebSocket upgrades refused with 503 because the node is failed.
    ws_rejected_failed: "counter",
    /// Connections closed with 1002/1007 for WebSocket protocol violations.
    protocol_errors: "counter",
    /// Connections closed after sending nothing for idle_timeout.
    idle_timeouts: "counter",
    /// Connections dropped because a socket write exceeded write_timeout.
    write_timeouts: "counter",
    /// Frames written to WebSocket clients (events, welcome, replies).
    frames_written: "counter",
    /// Publish items accepted (single and batch).
    publish_accepted: "counter",
    /// Publish requests or items refused (400/401/413).
    publish_rejected: "counter",
    /// Publish bodies over max_body_bytes (413).
    publish_too_large: "counter",
    /// Publishes answered from the idempotency window (not published again).
    publish_idempotent_replays: "counter",
}

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// Prometheus text exposition (format 0.0.4) of the server counters and engine stats.
pub fn render_prometheus(m: &ServerMetrics, stats: &Stats) -> String {
    let mut out = String::with_capacity(4096);
    for (name, kind, help, v) in m.snapshot() {
        metric(&mut out, &format!("agentcast_{name}"), kind, help, v);
    }
    let t = &stats.total;
    let engine = [
        (
            "published_user",
            "counter",
            "User-targeted publishes.",
            t.published_user,
        ),
        (
            "published_channel",
            "counter",
            "Channel publishes (per shard visited).",
            t.published_channel,
        ),
        (
            "published_broadcast",
            "counter",
            "Broadcasts (per shard visited).",
            t.published_broadcast,
        ),
        (
            "delivered",
            "counter",
            "Frames queued to connections.",
            t.delivered,
        ),
        (
            "replayed",
            "counter",
            "Frames replayed from history on connect.",
            t.replayed,
        ),
        ("gaps", "counter", "Resumes told of a gap.", t.gaps),
        (
            "forced_closes",
            "counter",
            "Connections closed 1013 as too slow for a critical event.",
            t.forced_closes,
        ),
        ("acks", "counter", "Acks received.", t.acks),
        (
            "escalated",
            "counter",
            "Critical events escalated after their ack deadline.",
            t.escalated,
        ),
        (
            "unacked_critical",
            "gauge",
            "Critical events not yet acknowledged.",
            t.unacked_critical,
        ),
        (
            "connections",
            "gauge",
            "Connections registered in the engine.",
            t.connections,
        ),
        ("users", "gauge", "Users with state.", t.users),
        (
            "channels",
            "gauge",
            "Channels with subscribers.",
            t.channels,
        ),
        (
            "queue_depth",
            "gauge",
            "Frames queued and not yet taken by transports.",
            t.queue_depth(),
        ),
        (
            "users_evicted",
            "counter",
            "Idle users evicted.",
            t.users_evicted,
        ),
        (
            "drained",
            "counter",
            "Frames taken by transports.",
            t.drained,
        ),
    ];
    for (name, kind, help, v) in engine {
        metric(&mut out, &format!("agentcast_engine_{name}"), kind, help, v);
    }
    for (name, arr, help) in [
        (
            "dropped",
            &t.dropped,
            "Frames dropped by ring overflow, by priority.",
        ),
        ("coalesced", &t.coalesced, "Frames coalesced, by priority."),
    ] {
        let full = format!("agentcast_engine_{name}");
        let _ = writeln!(out, "# HELP {full} {help}\n# TYPE {full} counter");
        for p in Priority::ALL {
            let _ = writeln!(out, "{full}{{priority=\"{p}\"}} {}", arr[p as usize]);
        }
    }
    out
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {}\n# TYPE {name} {kind}\n{name} {v}",
        help.trim()
    );
}

/// JSON statistics: `{"server": {...}, "engine": {...}, "shards": N}`.
pub fn render_json(m: &ServerMetrics, stats: &Stats) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let server: Map<String, Value> = m
        .snapshot()
        .into_iter()
        .map(|(n, _, _, v)| (n.to_owned(), json!(v)))
        .collect();
    let t = &stats.total;
    let by_p = |a: &[u64; 3]| json!({"low": a[0], "normal": a[1], "critical": a[2]});
    json!({
        "server": server,
        "engine": {
            "published_user": t.published_user,
            "published_channel": t.published_channel,
            "published_broadcast": t.published_broadcast,
            "delivered": t.delivered,
            "replayed": t.replayed,
            "gaps": t.gaps,
            "forced_closes": t.forced_closes,
            "acks": t.acks,
            "escalated": t.escalated,
            "unacked_critical": t.unacked_critical,
            "connections": t.connections,
            "users": t.users,
            "channels": t.channels,
            "queue_depth": t.queue_depth(),
            "drained": t.drained,
            "dropped": by_p(&t.dropped),
            "coalesced": by_p(&t.coalesced),
        },
        "shards": stats.shards.len(),
    })
}
