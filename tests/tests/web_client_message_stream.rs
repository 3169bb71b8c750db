//! `sdk/js/src/client.js` assembles a streamed message and resumes it mid-message without duplicated
//! or missing text: `tests/node/client_message_stream.mjs` runs the real client module in
//! Node.js (>= 20, `--experimental-websocket`) against a real dev-mode server, which drops the
//! connection (1012) after 50 of 150 deltas; the rest arrives after the resume as one merged
//! delta, and the assembled text must equal the published text.

use agentcast_tests::{TestServer, run_node_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_resumes_a_message_mid_stream_with_the_exact_text() {
    let server = TestServer::start_with(|c| c.dev_mode = true).await;
    run_node_script(&server, "client_message_stream.mjs").await;
}
