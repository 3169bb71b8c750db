//! `sdk/js/src/client.js` reconnects with jittered exponential backoff and resumes from its last
//! seq: `tests/node/client_backoff_resume.mjs` runs the real client module in Node.js
//! (>= 20, `--experimental-websocket`) against a real server through a TCP proxy of its own
//! that stops accepting for a while (the server "gone"). It fails unless every retry waited
//! within `[d/2, d]`, `d = min(maxDelayMs, initialDelayMs·2^k)`, the delays are jittered and
//! grow to the cap, and once the port accepts again the client reconnects with `?last_seq=`
//! its last seq and gets every event published meanwhile exactly once, in seq order.

use agentcast_tests::{TestServer, run_node_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_backs_off_with_jitter_and_resumes_from_its_last_seq() {
    let server = TestServer::start().await;
    run_node_script(&server, "client_backoff_resume.mjs").await;
}
