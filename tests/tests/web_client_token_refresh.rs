//! `web/client.js` asks the page for a new token when the server closes a session with 4001
//! `token expired`: `tests/node/client_token_refresh.mjs` runs the real client module in
//! Node.js (>= 20, `--experimental-websocket`) against a real server with a 2-second token
//! and `jwt_leeway_secs = 0`, and fails unless the first close is 4001, `getToken` is called
//! again with `expired: true`, and an event published after the reconnect arrives.

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, SECRET, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_calls_get_token_after_a_4001_close_and_resumes() {
    let server = TestServer::start_with(|c| c.jwt_leeway_secs = 0).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/client_token_refresh.mjs");
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
        "client_token_refresh.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("\"ok\":true"), "{stdout}\n{stderr}");
}
