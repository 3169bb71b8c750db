//! `/metrics` (Prometheus, through prometheus-client) and `/api/v1/stats` count what really
//! happened: connections by tier, events by type and priority, deliveries, acks, forced closes
//! by reason, the publish → socket-write latency histogram and health per component.

use agentcast_tests::{TestServer, token_with};
use serde_json::{Value, json};

/// The value of the sample line starting with `series ` in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_events_latency_and_health() {
    let server = TestServer::start().await;
    let mut c = server
        .connect(&token_with("mia", json!({"tier": "mid"})))
        .await;
    for (ty, run) in [
        ("agent_started", "r1"),
        ("agent_thinking", "r1"),
        ("agent_thinking", "r1"),
    ] {
        let (s, v) = server
            .publish(&json!({"user_id": "mia", "type": ty, "run_id": run, "data": {}}))
            .await;
        assert_eq!(s, 200, "{v}");
        let got = c.next_json().await;
        assert_eq!(got["type"], ty);
        c.send_json(&json!({"type": "ack", "seq": got["seq"]}))
            .await;
    }
    c.sync().await;

    let (s, m) = server.http("GET", "/metrics", None, b"").await;
    assert_eq!(s, 200);
    assert!(
        m.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    assert_eq!(
        sample(&m, "agentcast_connections{tier=\"mid\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "agentcast_connections{tier=\"free\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            "agentcast_events_published_total{type=\"agent_started\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "agentcast_events_published_total{type=\"agent_thinking\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "agentcast_events_delivered_total{type=\"agent_thinking\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "agentcast_events_published_by_priority_total{priority=\"critical\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sample(&m, "agentcast_acks_total"), Some(3.0), "{m}");
    assert_eq!(sample(&m, "agentcast_unacked_critical"), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "agentcast_forced_closes_total{reason=\"queue_overflow\"}"
        ),
        Some(0.0)
    );
    let samples = sample(&m, "agentcast_delivery_latency_seconds_count").unwrap();
    assert!(samples >= 1.0, "{m}");
    assert_eq!(
        sample(&m, "agentcast_delivery_latency_seconds_bucket{le=\"+Inf\"}"),
        Some(samples),
        "{m}"
    );
    assert_eq!(sample(&m, "agentcast_health_status"), Some(0.0));
    assert_eq!(
        sample(&m, "agentcast_component_health{component=\"shard-0\"}"),
        Some(0.0),
        "{m}"
    );
    assert!(m.contains("agentcast_recovery_attempts_total{component=\"shard-1\"} 0"));

    let (_, j) = server.http("GET", "/api/v1/stats", None, b"").await;
    let j: Value = serde_json::from_str(&j).unwrap();
    assert_eq!(j["connections_by_tier"]["mid"], 1, "{j}");
    assert_eq!(j["engine"]["published_by_type"]["agent_thinking"], 2);
    assert!(j["latency_us"]["count"].as_u64().unwrap() >= 1);
    assert!(j["latency_us"]["p99"].as_u64().unwrap() > 0);
    c.close().await;
}
