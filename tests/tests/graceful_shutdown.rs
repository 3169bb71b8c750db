//! Graceful shutdown: `run` returns Ok, every connection receives what was queued for it
//! and then a close frame 1001, and new connections are refused.

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
