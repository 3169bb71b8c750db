//! `web/client.js` assembles a streamed message and resumes it mid-message without duplicated
//! or missing text: `tests/node/client_message_stream.mjs` runs the real client module in
//! Node.js (>= 20, `--experimental-websocket`) against a real dev-mode server, which drops the
//! connection (1012) after 50 of 150 deltas; the rest arrives after the resume as one merged
//! delta, and the assembled text must equal the published text.

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, SECRET, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_resumes_a_message_mid_stream_with_the_exact_text() {
    let server = TestServer::start_with(|c| c.dev_mode = true).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/client_message_stream.mjs");
    let base = format!("http://{}", server.addr);
    let child = tokio::process::Command::new("node")
        .arg("--experimental-websocket")
        .arg("--no-warnings")
        .arg(&script)
        .args([&base, SECRET, API_KEY])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("the node script did not finish within 60 s")
        .unwrap_or_else(|e| {
            panic!("this test needs Node.js (>= 20) on PATH (`apt-get install -y nodejs`): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client_message_stream.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("\"ok\":true"), "{stdout}\n{stderr}");
}
