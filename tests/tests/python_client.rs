//! A client not written in Rust (Python `websockets`) connects, receives its events in
//! order, acks and pings. Requires `python3` with `websockets` (`pip install websockets`):
//! the test fails, loudly, when they are missing.

use agentcast_tests::{PyClient, TestServer, token};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_receives_acks_and_pings() {
    let server = TestServer::start().await;
    let url = server.ws_url(&format!("token={}", token("py-user")));
    let mut py = PyClient::spawn("client.py", &[&url, "3"], "websockets");
    py.expect_first("WELCOME py-user").await;
    let mut seqs = Vec::new();
    for (i, kind) in ["agent_started", "tool_executing", "agent_completed"]
        .iter()
        .enumerate()
    {
        let (s, r) = server
            .publish(&json!({"user_id": "py-user", "type": kind, "run_id": "r", "data": {"i": i, "text": "héllo"}}))
            .await;
        assert_eq!(s, 200);
        seqs.push(r["seq"].as_u64().unwrap());
    }
    for (i, (kind, seq)) in ["agent_started", "tool_executing", "agent_completed"]
        .iter()
        .zip(&seqs)
        .enumerate()
    {
        let line = py.next_line().await.expect("event line");
        assert_eq!(
            line,
            format!("EVENT {kind} {seq} {{\"i\": {i}, \"text\": \"h\\u00e9llo\"}}")
        );
    }
    assert_eq!(py.next_line().await.as_deref(), Some("PONG"));
    assert_eq!(py.next_line().await.as_deref(), Some("DONE"));
    assert!(py.wait_success().await);
    // The ack was applied: a new connection gets no replay.
    let mut again = server.connect(&token("py-user")).await;
    assert!(again.sync().await.is_empty());
}
