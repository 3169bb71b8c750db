//! `GET /metrics`: the Prometheus exposition, encoded by `prometheus-client` (OpenMetrics
//! text, which Prometheus scrapes natively; counters carry the `_total` suffix).
//!
//! Every scrape snapshots the engine's statistics, the server's counters and the health
//! report, and encodes them through a [`Collector`]. Nothing here is on a delivery path: the
//! numbers are atomics read once per scrape.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `agentcast_connections` | gauge | `tier` |
//! | `agentcast_events_published_total` | counter | `type` |
//! | `agentcast_events_published_by_priority_total` | counter | `priority` |
//! | `agentcast_events_delivered_total` | counter | `type` |
//! | `agentcast_events_coalesced_total`, `agentcast_events_dropped_total` | counter | `priority` |
//! | `agentcast_acks_total` | counter | |
//! | `agentcast_unacked_critical` | gauge | |
//! | `agentcast_forced_closes_total` | counter | `reason`: `queue_overflow` (1013), `worker_restart` (1011), `abuse` (1008), `protocol_error`, `idle_timeout`, `write_timeout`, `token_expired` (4001), `frame_too_large` (1009) |
//! | `agentcast_queue_depth` | gauge | |
//! | `agentcast_publish_overloaded_total` | counter | publishes refused with 503 because a shard's command queue was full |
//! | `agentcast_shutdown_unwritten_frames_total` | counter | frames queued to a connection that a graceful shutdown did not write (engine queues and sessions' buffers) |
//! | `agentcast_delivery_latency_seconds` | histogram | publish → socket write |
//! | `agentcast_health_status` | gauge | 0 healthy, 1 degraded, 2 failed |
//! | `agentcast_component_health` | gauge | `component` (same values) |
//! | `agentcast_recovery_attempts_total` | counter | `component` |
//! | `agentcast_health_transitions_total` | counter | |
//! | `agentcast_escalations_total`, `agentcast_webhook_{delivered,failed,dropped}_total` | counter | |
//! | `agentcast_server_<name>` | counter/gauge | every server counter of [`ServerMetrics`] |
//! | `agentcast_engine_<name>` | counter/gauge | engine totals (published per target, replayed, gaps, users, channels, …) |

use std::fmt;

use agentcast_engine::stats::KINDS;
use agentcast_engine::{EventKind, HealthReport, Priority, Stats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::metrics::{LATENCY_BOUNDS_US, ServerMetrics};
use crate::tier::Tier;

/// One scrape's numbers.
#[derive(Debug)]
struct Snapshot {
    server: Vec<(&'static str, &'static str, &'static str, u64)>,
    tiers: [u64; 4],
    latency: (Vec<u64>, u64, u64),
    stats: Stats,
    health: HealthReport,
}

/// The exposition of `m`, `stats` and `health`.
pub fn render(m: &ServerMetrics, stats: Stats, health: HealthReport) -> String {
    let snap = Snapshot {
        server: m.snapshot(),
        tiers: std::array::from_fn(|i| m.tier_open[i].load(std::sync::atomic::Ordering::Relaxed)),
        latency: m.latency.snapshot(),
        stats,
        health,
    };
    let mut registry = Registry::with_prefix("agentcast");
    registry.register_collector(Box::new(snap));
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

type Labels = Vec<(&'static str, String)>;

fn one(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    ty: MetricType,
    v: u64,
) -> fmt::Result {
    let me = enc.encode_descriptor(name, help, None, ty)?;
    match ty {
        MetricType::Counter => ConstCounter::new(v).encode(me),
        _ => ConstGauge::new(v as i64).encode(me),
    }
}

fn family(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: Vec<(Labels, u64)>,
) -> fmt::Result {
    let mut me = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        let fe = me.encode_family(&labels)?;
        match ty {
            MetricType::Counter => ConstCounter::new(v).encode(fe)?,
            _ => ConstGauge::new(v as i64).encode(fe)?,
        }
    }
    Ok(())
}

fn by_priority(a: &[u64; 3]) -> Vec<(Labels, u64)> {
    Priority::ALL
        .iter()
        .map(|p| (vec![("priority", p.as_str().to_owned())], a[*p as usize]))
        .collect()
}

fn by_kind(a: &[u64; KINDS]) -> Vec<(Labels, u64)> {
    (0..KINDS)
        .map(|i| (vec![("type", EventKind::slot_name(i).to_owned())], a[i]))
        .collect()
}

fn server_value(s: &Snapshot, name: &str) -> u64 {
    s.server
        .iter()
        .find(|(n, ..)| *n == name)
        .map_or(0, |r| r.3)
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        let t = &self.stats.total;
        let e = &mut enc;
        family(
            e,
            "connections",
            "Open WebSocket connections by tier.",
            Gauge,
            Tier::ALL
                .iter()
                .map(|tier| {
                    (
                        vec![("tier", tier.as_str().to_owned())],
                        self.tiers[*tier as usize],
                    )
                })
                .collect(),
        )?;
        family(
            e,
            "events_published",
            "Events published, by type.",
            Counter,
            by_kind(&t.published_by_kind),
        )?;
        family(
            e,
            "events_published_by_priority",
            "Events published, by priority (a channel or broadcast event counts once per shard).",
            Counter,
            by_priority(&t.published_by_priority),
        )?;
        family(
            e,
            "events_delivered",
            "Frames queued to connections (one per recipient), by type.",
            Counter,
            by_kind(&t.delivered_by_kind),
        )?;
        family(
            e,
            "events_coalesced",
            "Queued agent_thinking frames replaced by a newer one of the same run, by priority.",
            Counter,
            by_priority(&t.coalesced),
        )?;
        family(
            e,
            "events_dropped",
            "Frames dropped by a full connection ring, by priority.",
            Counter,
            by_priority(&t.dropped),
        )?;
        one(e, "acks", "Acks received from clients.", Counter, t.acks)?;
        one(
            e,
            "unacked_critical",
            "Critical events not yet acknowledged.",
            Gauge,
            t.unacked_critical,
        )?;
        let reason = |r: &str, v: u64| (vec![("reason", r.to_owned())], v);
        family(
            e,
            "forced_closes",
            "Connections closed by the server, by reason.",
            Counter,
            vec![
                reason("queue_overflow", t.forced_closes),
                reason("worker_restart", t.restart_closes),
                reason("abuse", server_value(self, "abuse_closes")),
                reason("protocol_error", server_value(self, "protocol_errors")),
                reason("idle_timeout", server_value(self, "idle_timeouts")),
                reason("write_timeout", server_value(self, "write_timeouts")),
                reason("token_expired", server_value(self, "token_expired_closes")),
                reason(
                    "frame_too_large",
                    server_value(self, "frame_too_large_closes"),
                ),
            ],
        )?;
        one(
            e,
            "queue_depth",
            "Frames queued to connections and not yet taken by their writers.",
            Gauge,
            t.queue_depth(),
        )?;
        one(
            e,
            "publish_overloaded",
            "Publishes refused (503) because a shard's command queue was full.",
            Counter,
            t.publishes_refused,
        )?;
        one(
            e,
            "shutdown_unwritten_frames",
            "Frames queued to connections that a graceful shutdown did not write.",
            Counter,
            t.shutdown_unwritten + server_value(self, "shutdown_unwritten"),
        )?;

        let (buckets, sum_us, count) = &self.latency;
        let mut buckets_s = Vec::with_capacity(buckets.len());
        for (i, c) in buckets.iter().enumerate() {
            let bound = LATENCY_BOUNDS_US
                .get(i)
                .map_or(f64::MAX, |&us| us as f64 / 1e6); // f64::MAX is encoded as le="+Inf"
            buckets_s.push((bound, *c));
        }
        let me = e.encode_descriptor(
            "delivery_latency_seconds",
            "Publish to socket-write latency, one sample per write batch (its oldest frame).",
            None,
            MetricType::Histogram,
        )?;
        EncodeHistogram {
            sum: *sum_us as f64 / 1e6,
            count: *count,
            buckets: buckets_s,
        }
        .encode(me)?;

        let h = &self.health;
        one(
            e,
            "health_status",
            "Node health: 0 healthy, 1 degraded, 2 failed.",
            Gauge,
            u64::from(h.status.as_number()),
        )?;
        family(
            e,
            "component_health",
            "Component health: 0 healthy, 1 degraded, 2 failed.",
            Gauge,
            h.components
                .iter()
                .map(|c| {
                    (
                        vec![("component", c.name.clone())],
                        u64::from(c.state.as_number()),
                    )
                })
                .collect(),
        )?;
        family(
            e,
            "recovery_attempts",
            "Automatic recovery attempts (worker restarts), by component.",
            Counter,
            h.components
                .iter()
                .filter(|c| c.name.starts_with("shard-"))
                .map(|c| (vec![("component", c.name.clone())], c.recovery_attempts))
                .collect(),
        )?;
        one(
            e,
            "health_transitions",
            "Component state transitions.",
            Counter,
            h.transitions,
        )?;
        one(
            e,
            "canary_sent",
            "Canary events sent through the delivery path.",
            Counter,
            h.canary_sent,
        )?;
        one(
            e,
            "canary_received",
            "Canary events received at the end of the delivery path.",
            Counter,
            h.canary_received,
        )?;
        for name in [
            "escalations",
            "webhook_delivered",
            "webhook_failed",
            "webhook_dropped",
        ] {
            let (_, kind, help, v) = self
                .server
                .iter()
                .find(|r| r.0 == name)
                .copied()
                .unwrap_or((name, "counter", "", 0));
            one(
                e,
                name,
                help.trim(),
                if kind == "gauge" { Gauge } else { Counter },
                v,
            )?;
        }
        for (name, kind, help, v) in &self.server {
            let ty = if *kind == "gauge" { Gauge } else { Counter };
            one(e, &format!("server_{name}"), help.trim(), ty, *v)?;
        }
        let engine = [
            (
                "published_user",
                Counter,
                "User-targeted publishes.",
                t.published_user,
            ),
            (
                "published_channel",
                Counter,
                "Channel publishes (per shard visited).",
                t.published_channel,
            ),
            (
                "published_broadcast",
                Counter,
                "Broadcasts (per shard visited).",
                t.published_broadcast,
            ),
            (
                "replayed",
                Counter,
                "Frames replayed from history on connect.",
                t.replayed,
            ),
            ("gaps", Counter, "Resumes told of a gap.", t.gaps),
            (
                "escalated",
                Counter,
                "Critical events escalated after their ack deadline.",
                t.escalated,
            ),
            (
                "escalations_dropped",
                Counter,
                "Escalations dropped by a full hook queue.",
                t.escalations_dropped,
            ),
            (
                "escalations_skipped",
                Counter,
                "Overdue critical events of never-connected users not escalated (policy skip).",
                t.escalations_skipped,
            ),
            (
                "connections",
                Gauge,
                "Connections registered in the engine.",
                t.connections,
            ),
            ("users", Gauge, "Users with state.", t.users),
            ("channels", Gauge, "Channels with subscribers.", t.channels),
            (
                "users_evicted",
                Counter,
                "Idle users evicted.",
                t.users_evicted,
            ),
            ("drained", Counter, "Frames taken by transports.", t.drained),
            (
                "users_evicted_over_limit",
                Counter,
                "Offline users evicted early to stay within max_users or max_history_bytes.",
                t.users_evicted_over_limit,
            ),
            (
                "history_bytes",
                Gauge,
                "Bytes held in user histories.",
                t.history_bytes,
            ),
            (
                "history_events",
                Gauge,
                "Events held in user histories.",
                t.history_events,
            ),
            (
                "direct_writes",
                Counter,
                "Frames written whole to sockets by shard workers themselves, never queued.",
                t.direct_writes,
            ),
            (
                "deltas_merged",
                Counter,
                "message_delta frames merged into a queued delta of their message (full ring).",
                t.deltas_merged,
            ),
            (
                "history_deltas_merged",
                Counter,
                "message_delta events merged into their message's previous history entry.",
                t.history_deltas_merged,
            ),
            (
                "seq_clock_waits",
                Counter,
                "Publishes whose seq waited for the next millisecond.",
                t.seq_clock_waits,
            ),
            (
                "sequenced_duplicates",
                Counter,
                "Cluster mode: events from Redis already seen by the shard (dropped).",
                t.sequenced_duplicates,
            ),
            (
                "sequenced_holes",
                Counter,
                "Cluster mode: events from Redis after missing seqs (a gap was sent).",
                t.sequenced_holes,
            ),
            (
                "runs",
                Gauge,
                "Runs tracked (live and recently finished).",
                t.runs,
            ),
            (
                "runs_started",
                Counter,
                "Runs opened by agent_started.",
                t.runs_started,
            ),
            (
                "runs_finished",
                Counter,
                "Runs closed by agent_completed or a closing agent_error.",
                t.runs_finished,
            ),
            (
                "runs_errored",
                Counter,
                "Of runs_finished, those closed by an agent_error.",
                t.runs_errored,
            ),
            (
                "run_duration_ms",
                Counter,
                "Sum of finished runs' durations in ms (divide by runs_finished for the mean).",
                t.run_duration_ms_total,
            ),
            (
                "tool_calls",
                Counter,
                "tool_executing events of tracked live runs.",
                t.tool_calls,
            ),
            (
                "tool_calls_completed",
                Counter,
                "tool_completed events paired with a running tool call.",
                t.tool_calls_completed,
            ),
            (
                "lifecycle_violations",
                Counter,
                "Events delivered with a meta.lifecycle flag.",
                t.lifecycle_violations,
            ),
        ];
        for (name, ty, help, v) in engine {
            one(e, &format!("engine_{name}"), help, ty, v)?;
        }
        Ok(())
    }
}

/// A histogram from a snapshot (bounds in seconds, per-bucket counts, not cumulative).
#[derive(Debug)]
struct EncodeHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeHistogram {
    fn encode(&self, mut me: prometheus_client::encoding::MetricEncoder<'_>) -> fmt::Result {
        me.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }
}
