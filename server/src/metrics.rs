//! Server-side counters and their exposition: Prometheus text (`GET /metrics`) and JSON
//! (`GET /api/v1/stats`), each joining these counters with the engine's [`Stats`].
//!
//! Every counter is a `Relaxed` atomic: they are independent monotonic tallies (and a few
//! gauges) read for display, and publish no other memory. The Prometheus exposition is
//! encoded by the `prometheus-client` crate (see [`crate::exposition`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use agentcast_engine::Stats;

macro_rules! server_counters {
    ($( $(#[doc = $doc:literal])* $name:ident : $kind:literal ),* $(,)?) => {
        /// Counters of the server layer. See the [module docs](self).
        #[derive(Debug, Default)]
        pub struct ServerMetrics {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
            /// Publish → socket-write latency.
            pub latency: LatencyHistogram,
            /// Gauge: open WebSocket connections by tier (`Tier as usize`).
            pub tier_open: [AtomicU64; 4],
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
    /// Gauge: client connections open (WebSocket and SSE).
    ws_open: "gauge",
    /// Connects (WebSocket and SSE) refused with 401 (token).
    ws_rejected_auth: "counter",
    /// Connects (WebSocket and SSE) refused with 400/403/405/426 (bad handshake, last_seq, Last-Event-ID or channels).
    ws_rejected_handshake: "counter",
    /// Connects (WebSocket and SSE) refused with 503 (node connection limit or shutting down).
    ws_rejected_capacity: "counter",
    /// Connects (WebSocket and SSE) refused with 429 (per-user connection limit of the tier).
    ws_rejected_user_limit: "counter",
    /// Server-sent event streams opened (GET /sse).
    sse_accepted: "counter",
    /// Gauge: server-sent event streams open (also counted in ws_open).
    sse_open: "gauge",
    /// Acks received through POST /api/v1/ack.
    http_acks: "counter",
    /// Connections answered 503 at accept: the process had no file descriptor left (raise the open-files limit).
    accept_out_of_files: "counter",
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
    /// Connects (WebSocket and SSE) refused with 503 because the node is failed.
    ws_rejected_failed: "counter",
    /// Connections closed with 1002/1007 for WebSocket protocol violations.
    protocol_errors: "counter",
    /// Connections closed after sending nothing for idle_timeout.
    idle_timeouts: "counter",
    /// Connections dropped because a socket write exceeded write_timeout.
    write_timeouts: "counter",
    /// Frames written to clients (events, welcome, replies; SSE: events handed to the response body;
    /// events shard workers wrote directly included).
    frames_written: "counter",
    /// Publish items accepted (single and batch).
    publish_accepted: "counter",
    /// Publish requests or items refused (400/401/413).
    publish_rejected: "counter",
    /// Publish bodies over max_body_bytes (413).
    publish_too_large: "counter",
    /// Publishes answered from the idempotency window (not published again).
    publish_idempotent_replays: "counter",
    // auth (H3)
    /// Connections closed with 4001 because their token expired (exp + leeway).
    token_expired_closes: "counter",
    /// Connections closed with 1009 because a frame announced more than 64 x max_message_bytes.
    frame_too_large_closes: "counter",
    // Graceful shutdown (H1).
    /// Frames a WebSocket session had taken from the engine but not written when a graceful
    /// shutdown gave up on it (grace period over, or the client went away meanwhile).
    shutdown_unwritten: "counter",
    // H4 (http hardening):
    /// Publishes refused with 409: an idempotency key reused with a different request.
    publish_idempotency_conflicts: "counter",
    /// Gauge: connections that have not finished a request head.
    pending_heads: "gauge",
    /// Connections closed because max_pending_connections was reached (the oldest pending).
    pending_evicted: "counter",
    /// Requests answered 431 because the head exceeded max_request_head_bytes.
    request_head_too_large: "counter",
    // Escalation (H5 ops).
    /// Gauge: escalation webhook POSTs in flight (at most webhook_concurrency).
    webhook_in_flight: "gauge",
    /// Escalation log lines written (aggregated: at most one per log_interval_ms).
    escalation_log_lines: "counter",
    // Streaming publish (issue 14.4, `POST /api/v1/publish/stream`).
    /// Streaming publish connections opened.
    publish_streams: "counter",
    /// Gauge: streaming publish connections open.
    publish_streams_open: "gauge",
    /// Non-empty lines read by streaming publish connections.
    publish_stream_lines: "counter",
    /// Stream lines published (ok receipt).
    publish_stream_published: "counter",
    /// Stream lines refused (error receipt: 400, 409, 413, 503).
    publish_stream_refused: "counter",
    /// Streams ended for more than abuse_max_errors consecutive bad lines.
    publish_stream_abuse_closes: "counter",
}

/// Upper bounds (µs) of the publish → socket-write latency buckets; the last bucket is +Inf.
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// Publish → socket-write latency: one sample per write batch (the oldest frame of the batch,
/// see `Connection::take_publish_stamp`). Lock-free: one bucket increment and two adds.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    /// Records one sample.
    pub fn observe_us(&self, us: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// `(per-bucket counts, sum µs, count)`.
    pub fn snapshot(&self) -> (Vec<u64>, u64, u64) {
        (
            self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            self.sum_us.load(Relaxed),
            self.count.load(Relaxed),
        )
    }

    /// The `q` quantile (0..=1) in µs, as the upper bound of the bucket holding it (the last
    /// finite bound for the +Inf bucket); `None` without samples.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let (b, _, n) = self.snapshot();
        if n == 0 {
            return None;
        }
        let rank = ((n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in b.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_US[i.min(LATENCY_BOUNDS_US.len() - 1)]);
            }
        }
        LATENCY_BOUNDS_US.last().copied()
    }
}

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
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
    let by_kind = |a: &[u64; agentcast_engine::stats::KINDS]| {
        a.iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    agentcast_engine::EventKind::slot_name(i).to_owned(),
                    json!(v),
                )
            })
            .collect::<Map<String, Value>>()
    };
    let tiers: Map<String, Value> = crate::tier::Tier::ALL
        .iter()
        .map(|t| {
            (
                t.as_str().to_owned(),
                json!(m.tier_open[*t as usize].load(Relaxed)),
            )
        })
        .collect();
    // Run tracking's fields, merged into `engine` below (one `json!` of them all passes the
    // macro's recursion limit).
    let runs = json!({
        "runs": t.runs,
        "runs_started": t.runs_started,
        "runs_finished": t.runs_finished,
        "runs_errored": t.runs_errored,
        "run_duration_ms_total": t.run_duration_ms_total,
        "tool_calls": t.tool_calls,
        "tool_calls_completed": t.tool_calls_completed,
        "runs_evicted": t.runs_evicted,
        "lifecycle_violations": t.lifecycle_violations,
    });
    let mut out = json!({
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
            "escalations_skipped": t.escalations_skipped,
            "unacked_critical": t.unacked_critical,
            "connections": t.connections,
            "users": t.users,
            "channels": t.channels,
            "queue_depth": t.queue_depth(),
            "drained": t.drained,
            "direct_writes": t.direct_writes,
            "dropped": by_p(&t.dropped),
            "coalesced": by_p(&t.coalesced),
            "deltas_merged": t.deltas_merged,
            "history_deltas_merged": t.history_deltas_merged,
            "restart_closes": t.restart_closes,
            "published_by_type": by_kind(&t.published_by_kind),
            "delivered_by_type": by_kind(&t.delivered_by_kind),
            "users_evicted": t.users_evicted,
            "users_evicted_over_limit": t.users_evicted_over_limit,
            "history_bytes": t.history_bytes,
            "history_events": t.history_events,
            "seq_clock_waits": t.seq_clock_waits,
            "sequenced_duplicates": t.sequenced_duplicates,
            "sequenced_holes": t.sequenced_holes,
            "publishes_refused": t.publishes_refused,
            "shutdown_unwritten": t.shutdown_unwritten,
        },
        "latency_us": {
            "unit": "us",
            "count": m.latency.snapshot().2,
            "p50": m.latency.quantile_us(0.50),
            "p90": m.latency.quantile_us(0.90),
            "p99": m.latency.quantile_us(0.99),
            "p999": m.latency.quantile_us(0.999),
        },
        "connections_by_tier": tiers,
        "shards": stats.shards.len(),
    });
    if let (Some(engine), serde_json::Value::Object(runs)) = (out["engine"].as_object_mut(), runs) {
        engine.extend(runs);
    }
    out
}
