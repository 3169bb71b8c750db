//! A client not written in Rust (Python `websockets`) connects, receives its events in
//! order, acks and pings. Requires `python3` with `websockets` (`pip install websockets`):
//! the test fails, loudly, when they are missing.

use std::process::Stdio;

use agentcast_tests::{TestServer, WAIT, token};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_receives_acks_and_pings() {
    let server = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/client.py");
    let url = server.ws_url(&format!("token={}", token("py-user")));
    let mut child = Command::new("python3")
        .arg(script)
        .arg(&url)
        .arg("3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install Python 3 and `pip install websockets`")
        });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("python client timed out")
            .expect("read python stdout")
    };
    let first = next_line().await;
    if first.as_deref() != Some("WELCOME py-user") {
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "python client failed (exit {:?}): {first:?}\n{}\nThis test needs python3 with the `websockets` package: pip install websockets",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
        let line = next_line().await.expect("event line");
        assert_eq!(
            line,
            format!("EVENT {kind} {seq} {{\"i\": {i}, \"text\": \"h\\u00e9llo\"}}")
        );
    }
    assert_eq!(next_line().await.as_deref(), Some("PONG"));
    assert_eq!(next_line().await.as_deref(), Some("DONE"));
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    // The ack was applied: a new connection gets no replay.
    let mut again = server.connect(&token("py-user")).await;
    assert!(again.sync().await.is_empty());
}
