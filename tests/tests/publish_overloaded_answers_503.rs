//! A publish to a shard whose command queue is full (`command_queue_capacity`) is answered
//! `503` with a JSON error, publishes nothing, and is counted in
//! `agentcast_publish_overloaded_total`; the publishes that were queued complete normally.

use agentcast_tests::{API_KEY, TestServer};
use serde_json::json;

const BOUND: usize = 4;
const PUBLISHES: usize = 16;

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_command_queue_answers_503_with_a_json_error_and_publishes_nothing() {
    let server = TestServer::start_with(|cfg| {
        cfg.shards = Some(1);
        cfg.command_queue_capacity = BOUND;
        cfg.health.fault_injection = true;
        cfg.health.canary = false;
    })
    .await;
    // The only shard sleeps, so nothing leaves its queue while the publishes arrive.
    let (status, body) = server
        .http(
            "POST",
            "/api/v1/debug/fault",
            Some(API_KEY),
            json!({"shard": 0, "fault": "stall", "ms": 3000})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let tasks: Vec<_> = (0..PUBLISHES)
        .map(|i| {
            let api = TestServer::remote(server.addr);
            tokio::spawn(async move {
                api.publish(&json!({
                    "user_id": "flooded", "type": "tool_executing", "run_id": "r",
                    "data": {"i": i},
                }))
                .await
            })
        })
        .collect();
    let mut accepted = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.expect("publish task");
        match status {
            200 => accepted += 1,
            503 => {
                let error = body["error"].as_str().unwrap_or_default();
                assert!(error.contains("overloaded"), "JSON error: {body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(refused > 0, "no publish was refused ({accepted} accepted)");
    assert_eq!(
        accepted, BOUND,
        "exactly the bound is admitted while the shard is stalled"
    );

    let (_, stats) = server.http("GET", "/api/v1/stats", None, b"").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    assert_eq!(
        stats["engine"]["published_user"], accepted,
        "refused publishes changed nothing: {stats}"
    );
    assert_eq!(stats["engine"]["publishes_refused"], refused);
    let (_, text) = server.http("GET", "/metrics", None, b"").await;
    assert_eq!(
        metric(&text, "agentcast_publish_overloaded_total "),
        refused as u64
    );
}
