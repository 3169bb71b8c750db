//! Graceful shutdown: `run` returns Ok, every connection receives what was queued for it (its
//! hand-off queue and its priority ring) and then a close frame 1001, and new connections are
//! refused.

use agentcast_tests::{Incoming, TestServer, token};
use serde_json::json;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_what_was_queued_then_closes_with_1001() {
    let mut server = TestServer::start().await;
    let mut a = server.connect(&token("a")).await;
    let mut b = server.connect(&token("b")).await;
    let mut seqs = Vec::new();
    for i in 0..20 {
        seqs.push(server.publish_user("a", json!({"i": i})).await);
    }
    server.publish_user("b", json!({})).await;
    server.shutdown().await.expect("run returns Ok");
    for s in &seqs {
        assert_eq!(a.next_json().await["seq"], *s);
    }
    assert!(matches!(a.next().await, Incoming::Closed(Some(1001))));
    assert_eq!(b.next_json().await["type"], "tool_executing");
    assert_eq!(b.closed().await, Some(1001));
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still accepting"
    );
}

/// More frames queued than the hand-off queue holds (the rest wait in the connection's
/// priority ring) to a client that reads nothing until the shutdown began: every one of them
/// is written before the 1001 close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_the_ring_too_not_only_the_handoff_queue() {
    const EVENTS: usize = 250; // fewer than ring (256) + hand-off (32): nothing is dropped
    let mut server = TestServer::start_with(|cfg| {
        cfg.shutdown_grace_ms = 60_000;
        cfg.limits.write_timeout_ms = 60_000;
    })
    .await;
    let mut slow = server.connect(&token("slow")).await;
    let blob = "x".repeat(64 * 1024);
    let mut seqs = Vec::new();
    for i in 0..EVENTS {
        seqs.push(
            server
                .publish_user("slow", json!({"i": i, "blob": blob}))
                .await,
        );
    }
    let (_, stats) = server.http("GET", "/api/v1/stats", None, b"").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    let queued = stats["engine"]["queue_depth"]
        .as_u64()
        .expect("queue_depth");
    assert!(
        queued > 32,
        "the test must queue past the hand-off queue (32): {queued} queued"
    );

    let stop = tokio::spawn(async move { server.shutdown().await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for s in &seqs {
        assert_eq!(slow.next_json().await["seq"], *s);
    }
    assert!(matches!(slow.next().await, Incoming::Closed(Some(1001))));
    stop.await.expect("shutdown task").expect("run returns Ok");
}
