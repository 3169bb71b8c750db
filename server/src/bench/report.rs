//! The results of a bench run: what each receiver group hands back ([`GroupReport`]), how
//! their latency histograms travel between processes and merge, and the final [`Report`]
//! rendered as a table and as JSON.
//!
//! Histograms record nanoseconds with 3 significant digits (at most 0.1 % error) and resize
//! as needed; between processes they travel as hdrhistogram's V2 encoding in base64.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// A new, empty latency histogram (ns, 3 significant digits, auto-resizing).
pub fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 1 s to start with; auto-resize extends the range when a larger value comes.
    let mut h = Histogram::new_with_bounds(1, 1_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!("3 sig figs")));
    h.auto(true);
    h
}

/// `h` in hdrhistogram's V2 encoding, base64.
pub fn histogram_to_base64(h: &Histogram<u64>) -> Result<String, String> {
    let mut raw = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut raw)
        .map_err(|e| format!("serializing the histogram: {e:?}"))?;
    Ok(B64.encode(raw))
}

/// The histogram encoded by [`histogram_to_base64`].
pub fn histogram_from_base64(s: &str) -> Result<Histogram<u64>, String> {
    let raw = B64
        .decode(s)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut raw.as_slice())
        .map_err(|e| format!("histogram does not decode: {e:?}"))?;
    Ok(h)
}

/// Adds `other` into `into`, growing its range as needed.
pub fn merge(into: &mut Histogram<u64>, other: &Histogram<u64>) -> Result<(), String> {
    into.add(other)
        .map_err(|e| format!("merging histograms: {e:?}"))
}

/// What one group of receivers (a child process, or the in-process group) counted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GroupReport {
    /// Connections that completed the WebSocket handshake.
    pub connected: u64,
    /// Connections that failed to connect or upgrade.
    pub failed: u64,
    /// The first connect failure, for the operator.
    pub first_error: Option<String>,
    /// Connections the server closed (or that broke) after connecting.
    pub disconnects: u64,
    /// Per user index present in this group: `[user, connections, measured events received]`.
    pub per_user: Vec<[u64; 3]>,
    /// Events whose target user is not the receiving connection's user.
    pub leaks: u64,
    /// Events received twice, or older than one already received, by the same connection.
    pub duplicates: u64,
    /// Bench events of another run (history replayed from an earlier run), ignored.
    pub stale: u64,
    /// Frames that could not be decoded (a protocol error closes the connection).
    pub protocol_errors: u64,
    /// The latency histogram of measured events, [`histogram_to_base64`].
    pub histogram: String,
    /// `--reconnect`: connections that reconnected with `?last_seq=` after a close.
    #[serde(default)]
    pub resumes: u64,
    /// Times a connection's next seq jumped by more than 1 (events it will not get).
    #[serde(default)]
    pub seq_holes: u64,
    /// `--reconnect`: reconnect attempts that failed (each is retried after a backoff).
    #[serde(default)]
    pub reconnect_failures: u64,
    /// The failed reconnect attempts by why: the refusal's HTTP status (`"503"`, `"429"`),
    /// `"timeout"`, `"connect"` or `"io"`.
    #[serde(default)]
    pub reconnect_failure_reasons: std::collections::BTreeMap<String, u64>,
    /// When the first connection of this group closed unexpectedly, ms since the Unix epoch.
    #[serde(default)]
    pub first_disconnect_unix_ms: Option<u64>,
    /// When the last resume of this group completed, ms since the Unix epoch.
    #[serde(default)]
    pub last_resume_unix_ms: Option<u64>,
    /// The largest measured frame received, WebSocket header included, bytes.
    #[serde(default)]
    pub frame_bytes: u64,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// The summary of a nanosecond histogram.
    pub fn of(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// The result of a bench run, printed as a table and written as JSON (`--json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// `per-user` or `broadcast`.
    pub scenario: String,
    /// The server's base URL.
    pub url: String,
    /// Run id (the `ab` of every event).
    pub run_id: String,
    /// Receiver processes (0: in the bench process itself).
    pub procs: usize,
    /// Connections asked for.
    pub connections_requested: u64,
    /// Connections that completed the handshake.
    pub connections: u64,
    /// Connections that failed.
    pub connect_failed: u64,
    /// The first connect failure.
    pub connect_error: Option<String>,
    /// Distinct users.
    pub users: u64,
    /// Seconds from the first connect to the last handshake.
    pub connect_secs: f64,
    /// Handshakes per second achieved.
    pub connect_rate: f64,
    /// Size of each event's `data`, bytes.
    pub payload_bytes: usize,
    /// Warm-up seconds (events sent, not measured).
    pub warmup_secs: f64,
    /// Measurement window, seconds.
    pub duration_secs: f64,
    /// Events per second asked for (per-user) or 1000 / interval (broadcast).
    pub target_rate: f64,
    /// Events accepted by the server (HTTP 200) inside the window.
    pub events_sent: u64,
    /// Events per second achieved inside the window.
    pub events_per_sec: f64,
    /// Publish requests that failed (non-200 or I/O), whole run.
    pub publish_errors: u64,
    /// The first publish failure.
    pub publish_error: Option<String>,
    /// Of `publish_errors`, those answered `503` (broker unavailable, or out of capacity).
    #[serde(default)]
    pub publish_errors_503: u64,
    /// When the first publish failed, ms since the Unix epoch.
    #[serde(default)]
    pub publish_error_first_unix_ms: Option<u64>,
    /// When the last publish failed, ms since the Unix epoch.
    #[serde(default)]
    pub publish_error_last_unix_ms: Option<u64>,
    /// Sum of the receipts' `connections` inside the window (the server's own count).
    pub server_receipt_connections: u64,
    /// Deliveries expected: each measured event × the connected devices of its target
    /// (broadcast: × all connections).
    pub deliveries_expected: u64,
    /// Measured events received by a connection they were meant for, once.
    pub deliveries_received: u64,
    /// Σ over users of (expected − received) where positive: a user who got more than
    /// expected does not offset another's loss.
    pub loss: u64,
    /// The first 20 users short of deliveries: `[user, devices, expected, received]`.
    #[serde(default)]
    pub loss_users: Vec<[u64; 4]>,
    /// Σ over users of (received − expected) where positive: deliveries of events whose
    /// publish was not answered 200 (an ambiguous failure, e.g. a node killed mid-request)
    /// yet was stored and delivered.
    #[serde(default)]
    pub extra_deliveries: u64,
    /// Events received by a connection of another user. Must be 0.
    pub leaks: u64,
    /// Events a connection received twice or out of order.
    pub duplicates: u64,
    /// Connections closed during the run.
    pub disconnects: u64,
    /// `--reconnect`: connections that reconnected with `?last_seq=` after a close.
    #[serde(default)]
    pub resumes: u64,
    /// Times a connection's next per-user seq jumped by more than 1: events it skipped
    /// (a `gap` after a Redis restart, or a loss).
    #[serde(default)]
    pub seq_holes: u64,
    /// `--reconnect`: failed reconnect attempts (each retried after a backoff).
    #[serde(default)]
    pub reconnect_failures: u64,
    /// The failed reconnect attempts by why: the refusal's HTTP status (`"503"`, `"429"`),
    /// `"timeout"` (no answer within 20 s), `"connect"` (the TCP connect failed) or `"io"`.
    #[serde(default)]
    pub reconnect_failure_reasons: std::collections::BTreeMap<String, u64>,
    /// The first unexpected close, ms since the Unix epoch.
    #[serde(default)]
    pub first_disconnect_unix_ms: Option<u64>,
    /// The last completed resume, ms since the Unix epoch.
    #[serde(default)]
    pub last_resume_unix_ms: Option<u64>,
    /// Events of an earlier run, ignored.
    pub stale: u64,
    /// Frames that failed to decode.
    pub protocol_errors: u64,
    /// Publish → receive latency of measured deliveries.
    pub latency: Latency,
    /// The server's pid, when known (the first of `server_pids`).
    pub server_pid: Option<u32>,
    /// Every server pid measured (`--server-pid`, comma-separated, or the one found).
    #[serde(default)]
    pub server_pids: Vec<u32>,
    /// Each pid's CPU seconds inside the window, in `server_pids` order (`null`: the
    /// process was gone at the end).
    #[serde(default)]
    pub server_cpu_secs_per_pid: Vec<Option<f64>>,
    /// Server CPU seconds (user + system) inside the window, summed over the pids alive
    /// at both ends.
    pub server_cpu_secs: Option<f64>,
    /// Load generator CPU seconds (this process and its children) inside the window.
    pub client_cpu_secs: Option<f64>,
    /// Time the server's threads waited for a CPU inside the window, seconds (from
    /// `schedstat`; large values mean the machine was oversubscribed).
    pub server_cpu_wait_secs: Option<f64>,
    /// The same for the load generator's threads.
    pub client_cpu_wait_secs: Option<f64>,
    /// Server CPU microseconds per delivery received.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Server resident memory before connecting, KiB.
    pub server_rss_kib_before: Option<u64>,
    /// Server resident memory with every connection open and idle, KiB.
    pub server_rss_kib_connected: Option<u64>,
    /// `(connected - before) / connections`, KiB.
    pub server_kib_per_connection: Option<f64>,
    /// `/proc/loadavg` (1, 5, 15 min) at the start of the window.
    pub load_before: Option<String>,
    /// `/proc/loadavg` at the end of the window.
    pub load_after: Option<String>,
    /// The largest measured frame received, WebSocket header included, bytes.
    #[serde(default)]
    pub frame_bytes: u64,
    /// `--floor`: the loopback floor measured after the run (`None` without the flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<super::floor::FloorReport>,
    /// `--floor`: `server_cpu_us_per_delivery` / the floor's `sender_us_per_write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_per_delivery_over_floor: Option<f64>,
    /// The tokens scenario's figures (`None` for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<super::tokens::TokenReport>,
}

impl Report {
    /// Whether the run delivered everything to the right connections and nothing else.
    pub fn clean(&self) -> bool {
        self.loss == 0
            && self.leaks == 0
            && self.duplicates == 0
            && self.connect_failed == 0
            && self.disconnects <= self.resumes
            && self.publish_errors == 0
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let na = |v: Option<String>| v.unwrap_or_else(|| "n/a".to_owned());
        let f1 = |v: Option<f64>| na(v.map(|x| format!("{x:.2}")));
        let l = &self.latency;
        let rows: Vec<(&str, String)> = vec![
            ("scenario", self.scenario.clone()),
            ("url", self.url.clone()),
            ("run id", self.run_id.clone()),
            (
                "connections",
                format!(
                    "{} of {} ({} failed), {} users, {} procs",
                    self.connections,
                    self.connections_requested,
                    self.connect_failed,
                    self.users,
                    self.procs
                ),
            ),
            (
                "connect rate",
                format!("{:.0}/s over {:.1} s", self.connect_rate, self.connect_secs),
            ),
            (
                "window",
                format!(
                    "{:.1} s after {:.1} s warm-up, payload {} B",
                    self.duration_secs, self.warmup_secs, self.payload_bytes
                ),
            ),
            (
                "events sent",
                format!(
                    "{} ({:.0}/s, target {:.0}/s), {} publish errors",
                    self.events_sent, self.events_per_sec, self.target_rate, self.publish_errors
                ),
            ),
            (
                "deliveries",
                format!(
                    "expected {}, received {} (server receipts {})",
                    self.deliveries_expected,
                    self.deliveries_received,
                    self.server_receipt_connections
                ),
            ),
            ("loss", self.loss.to_string()),
            ("leaks", self.leaks.to_string()),
            (
                "dups / disconnects",
                format!(
                    "{} / {} ({} resumed, {} failed reconnects{}, {} extra deliveries)",
                    self.duplicates,
                    self.disconnects,
                    self.resumes,
                    self.reconnect_failures,
                    if self.reconnect_failure_reasons.is_empty() {
                        String::new()
                    } else {
                        let by: Vec<String> = self
                            .reconnect_failure_reasons
                            .iter()
                            .map(|(why, n)| format!("{n} {why}"))
                            .collect();
                        format!(": {}", by.join(", "))
                    },
                    self.extra_deliveries
                ),
            ),
            (
                "latency",
                format!(
                    "p50 {} | p90 {} | p99 {} | p99.9 {} | max {} ({} samples)",
                    fmt_us(l.p50_us),
                    fmt_us(l.p90_us),
                    fmt_us(l.p99_us),
                    fmt_us(l.p999_us),
                    fmt_us(l.max_us),
                    l.count
                ),
            ),
            (
                "server cpu",
                format!(
                    "{} s (pids {:?}: {}), {} µs/delivery",
                    f1(self.server_cpu_secs),
                    self.server_pids,
                    self.server_cpu_secs_per_pid
                        .iter()
                        .map(|&v| f1(v))
                        .collect::<Vec<_>>()
                        .join(" + "),
                    f1(self.server_cpu_us_per_delivery)
                ),
            ),
        ];
        let mut rows = rows;
        if let Some(f) = &self.floor {
            rows.push(("floor", f.line()));
            rows.push((
                "cpu / floor",
                format!(
                    "{} µs/delivery ÷ {:.2} µs/write = {}×",
                    f1(self.server_cpu_us_per_delivery),
                    f.sender_us_per_write,
                    f1(self.server_cpu_per_delivery_over_floor)
                ),
            ));
        }
        rows.extend([
            ("client cpu", format!("{} s", f1(self.client_cpu_secs))),
            (
                "waiting for cpu",
                format!(
                    "server {} s, client {} s",
                    f1(self.server_cpu_wait_secs),
                    f1(self.client_cpu_wait_secs)
                ),
            ),
            (
                "server rss",
                format!(
                    "{} KiB before, {} KiB connected, {} KiB/connection",
                    na(self.server_rss_kib_before.map(|v| v.to_string())),
                    na(self.server_rss_kib_connected.map(|v| v.to_string())),
                    f1(self.server_kib_per_connection)
                ),
            ),
            (
                "load avg",
                format!(
                    "{} before, {} after",
                    na(self.load_before.clone()),
                    na(self.load_after.clone())
                ),
            ),
        ]);
        if let Some(t) = &self.tokens {
            rows.push((
                "tokens",
                format!(
                    "{} runs × {:.0}/s by {}: {} tokens accepted, {} runs complete",
                    t.runs, t.tokens_per_sec, t.publish, t.tokens_sent, t.runs_complete
                ),
            ));
            rows.push((
                "text",
                format!(
                    "{} chars sent, {} received, {} lost; {} merged frames ({} tokens)",
                    t.chars_sent, t.chars_received, t.chars_lost, t.merged_frames, t.merged_tokens
                ),
            ));
            if t.stalled > 0 {
                rows.push((
                    "stalled",
                    format!(
                        "{} stalled receivers: {} merged frames ({} tokens)",
                        t.stalled, t.stalled_merged_frames, t.stalled_merged_tokens
                    ),
                ));
            }
            rows.push((
                "server memory",
                format!(
                    "{} KiB at the first token, peak {} KiB, {} KiB at the end",
                    na(t.server_rss_kib_start.map(|v| v.to_string())),
                    na(t.server_rss_kib_peak.map(|v| v.to_string())),
                    na(t.server_rss_kib_end.map(|v| v.to_string()))
                ),
            ));
            rows.push((
                "cpu per token",
                format!(
                    "server {} µs, bench {} µs",
                    f1(t.server_cpu_us_per_token),
                    f1(t.client_cpu_us_per_token)
                ),
            ));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        if let Some(e) = &self.connect_error {
            out.push_str(&format!("first connect error: {e}\n"));
        }
        if let Some(e) = &self.publish_error {
            out.push_str(&format!("first publish error: {e}\n"));
        }
        out
    }
}

/// Microseconds, shown in ms past 10 ms.
fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_base64_and_merge() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=1000u64 {
            a.record(v * 1000).unwrap();
        }
        b.record(5_000_000_000).unwrap(); // 5 s: beyond the initial range
        let a2 = histogram_from_base64(&histogram_to_base64(&a).unwrap()).unwrap();
        let b2 = histogram_from_base64(&histogram_to_base64(&b).unwrap()).unwrap();
        assert_eq!(a2.len(), 1000);
        let mut all = new_histogram();
        merge(&mut all, &a2).unwrap();
        merge(&mut all, &b2).unwrap();
        let l = Latency::of(&all);
        assert_eq!(l.count, 1001);
        assert!((l.p50_us - 501.0).abs() < 1.0, "{}", l.p50_us);
        assert!(
            (l.max_us - 5_000_000.0).abs() / 5_000_000.0 < 0.001,
            "{}",
            l.max_us
        );
        assert!(histogram_from_base64("not base64!").is_err());
        assert!(histogram_from_base64("AAAA").is_err());
    }

    #[test]
    fn an_empty_histogram_summarises_to_zero() {
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
    }

    #[test]
    fn the_table_shows_every_headline_figure() {
        let r = Report {
            scenario: "per-user".into(),
            connections: 15_000,
            connections_requested: 15_000,
            deliveries_expected: 600_000,
            deliveries_received: 599_999,
            loss: 1,
            leaks: 0,
            latency: Latency {
                count: 599_999,
                p50_us: 310.0,
                p90_us: 700.0,
                p99_us: 1_500.0,
                p999_us: 12_345.0,
                max_us: 40_000.0,
                mean_us: 400.0,
            },
            server_cpu_secs: Some(12.5),
            server_cpu_us_per_delivery: Some(2.08),
            server_kib_per_connection: Some(7.9),
            ..Report::default()
        };
        let t = r.table();
        for needle in [
            "15000 of 15000",
            "expected 600000, received 599999",
            "loss                1",
            "p99 1500 µs",
            "p99.9 12.3 ms",
            "max 40.0 ms",
            "12.50 s",
            "2.08 µs/delivery",
            "7.90 KiB/connection",
            "n/a KiB before",
        ] {
            assert!(t.contains(needle), "missing `{needle}` in\n{t}");
        }
        assert!(!r.clean());
        assert!(!t.contains("floor"), "{t}");
        let json = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_floor_sits_next_to_cpu_per_delivery() {
        let r = Report {
            server_cpu_us_per_delivery: Some(14.6),
            server_cpu_per_delivery_over_floor: Some(1.38),
            floor: Some(super::super::floor::FloorReport {
                connections: 5000,
                rounds: 100,
                interval_ms: 100.0,
                write_bytes: 351,
                writes: 500_000,
                sender_user_secs: 0.2,
                sender_sys_secs: 5.1,
                sender_us_per_write: 10.6,
                reader_cpu_secs: Some(3.2),
                ..Default::default()
            }),
            ..Report::default()
        };
        let t = r.table();
        for needle in [
            "\nfloor ",
            "  10.60 µs sender CPU per write (5000 sockets × 100 rounds every 100 ms, 351 B",
            "reader 3.20 s CPU",
            "14.60 µs/delivery ÷ 10.60 µs/write = 1.38×",
        ] {
            assert!(t.contains(needle), "missing `{needle}` in\n{t}");
        }
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""sender_us_per_write":10.6"#), "{json}");
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }
}
