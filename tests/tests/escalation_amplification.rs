//! Escalation does not amplify a flood: thousands of unacknowledged critical events write a
//! bounded number of log lines and leave the node healthy; a webhook that hangs holds at
//! most `webhook_concurrency` requests while the rest wait in the bounded queue or are
//! dropped and counted, and delivery to clients goes on; users that never connected are
//! escalated or skipped by the `never_connected` policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentcast_server::config::NeverConnected;
use agentcast_tests::{TestServer, token};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

async fn stats(server: &TestServer) -> Value {
    let (s, b) = server.http("GET", "/api/v1/stats", None, b"").await;
    assert_eq!(s, 200, "{b}");
    serde_json::from_str(&b).unwrap()
}

/// Polls the stats until `pred` holds (30 s at most: the machine may be slow).
async fn wait_stats(server: &TestServer, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = stats(server).await;
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn server_n(v: &Value, name: &str) -> u64 {
    v["server"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: {v}"))
}

/// Publishes `n` critical events (`agent_error`) to offline users `flood-0` … in batches.
async fn flood(server: &TestServer, n: usize, users: usize) {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"user_id": format!("flood-{}", i % users), "type": "agent_error",
                   "run_id": format!("r{i}"), "data": {"code": "E"}})
        })
        .collect();
    for chunk in items.chunks(1_000) {
        server.publish_batch(chunk).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_unacked_critical_events_write_a_bounded_log_and_leave_the_node_healthy() {
    let server = TestServer::start_with(|cfg| {
        cfg.escalation.ack_deadline_ms = 200;
        cfg.escalation.log_interval_ms = 1_000;
        cfg.health.interval_ms = 100;
    })
    .await;
    let started = Instant::now();
    flood(&server, 2_000, 500).await;
    let v = wait_stats(&server, "2,000 escalations", |v| {
        server_n(v, "escalations") == 2_000
    })
    .await;
    // Let the last summary be written (one interval), then count the lines.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let elapsed = started.elapsed();
    let v2 = stats(&server).await;
    let lines = server_n(&v2, "escalation_log_lines");
    // One line in full, then at most one summary per second of the flood, plus the last.
    let bound = 2 + elapsed.as_secs();
    assert!(
        (2..=bound).contains(&lines),
        "{lines} escalation log lines for 2,000 escalations over {elapsed:?} (bound {bound})"
    );
    assert_eq!(v["engine"]["escalated"], 2_000, "{v}");
    let (s, r) = server.http("GET", "/readyz", None, b"").await;
    assert_eq!(s, 200, "{r}");
    let r: Value = serde_json::from_str(&r).unwrap();
    assert_eq!(r["status"], "healthy", "{r}");
}

/// A webhook receiver that accepts connections, reads, and never answers; counts them.
async fn hanging_webhook() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let open = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&open);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // Read the request, answer nothing, hold the socket.
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (url, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_webhook_holds_at_most_webhook_concurrency_requests_and_delivery_goes_on() {
    const K: usize = 4;
    const QUEUE: usize = 10;
    const N: usize = 50;
    let (url, accepted) = hanging_webhook().await;
    let server = TestServer::start_with(move |cfg| {
        cfg.escalation.ack_deadline_ms = 200;
        cfg.escalation.webhook_url = Some(url);
        cfg.escalation.webhook_concurrency = K;
        cfg.escalation.webhook_queue = QUEUE;
        cfg.escalation.webhook_attempts = 1;
        cfg.escalation.webhook_timeout_ms = 120_000;
    })
    .await;
    flood(&server, N, N).await;
    // Every escalation is either sent (K in flight), queued (at most QUEUE) or dropped and
    // counted. How many the K senders took off the queue before it filled depends on the
    // scheduling, so the drops lie between N − K − QUEUE and N − QUEUE.
    let v = wait_stats(&server, "escalations and drops", |v| {
        server_n(v, "escalations") == N as u64
            && server_n(v, "webhook_in_flight") == K as u64
            && server_n(v, "webhook_dropped") >= (N - K - QUEUE) as u64
    })
    .await;
    let dropped = server_n(&v, "webhook_dropped");
    assert!(dropped <= (N - QUEUE) as u64, "{v}");
    // K requests in flight (not one at a time), the queue full behind them, the rest dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::SeqCst) < K && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), K, "webhook connections");
    let v2 = stats(&server).await;
    assert_eq!(server_n(&v2, "webhook_in_flight"), K as u64, "{v2}");
    assert_eq!(server_n(&v2, "webhook_delivered"), 0, "{v}");
    assert_eq!(server_n(&v2, "webhook_failed"), 0, "{v}");
    // Delivery does not wait for the webhook.
    let mut c = server.connect(&token("reader")).await;
    let seq = server.publish_user("reader", json!({"n": 1})).await;
    assert_eq!(c.next_json().await["seq"], seq);
    // Nothing more was dropped meanwhile, and the hanging requests are still the only ones.
    let v3 = stats(&server).await;
    assert_eq!(server_n(&v3, "webhook_dropped"), dropped, "{v3}");
    assert_eq!(accepted.load(Ordering::SeqCst), K, "webhook connections");
}

/// Publishes one critical event to `ghost` (never connected) and one to `gone` (connected,
/// then left without acking), and waits until both deadlines were handled.
async fn ghost_and_gone(policy: NeverConnected) -> Value {
    let server = TestServer::start_with(move |cfg| {
        cfg.escalation.ack_deadline_ms = 200;
        cfg.escalation.never_connected = policy;
    })
    .await;
    let c = server.connect(&token("gone")).await;
    c.close().await;
    for user in ["ghost", "gone"] {
        let (s, v) = server
            .publish(
                &json!({"user_id": user, "type": "agent_completed", "run_id": "r", "data": {}}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    wait_stats(&server, "both deadlines", |v| {
        v["engine"]["escalated"].as_u64().unwrap_or(0)
            + v["engine"]["escalations_skipped"].as_u64().unwrap_or(0)
            == 2
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_never_connected_skip_a_user_who_never_connected_is_not_escalated() {
    let v = ghost_and_gone(NeverConnected::Skip).await;
    assert_eq!(v["engine"]["escalated"], 1, "only `gone`: {v}");
    assert_eq!(v["engine"]["escalations_skipped"], 1, "`ghost`: {v}");
    assert_eq!(server_n(&v, "escalations"), 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_never_connected_escalate_a_user_who_never_connected_is_escalated() {
    let v = ghost_and_gone(NeverConnected::Escalate).await;
    assert_eq!(v["engine"]["escalated"], 2, "{v}");
    assert_eq!(v["engine"]["escalations_skipped"], 0, "{v}");
    assert_eq!(server_n(&v, "escalations"), 2, "{v}");
}
