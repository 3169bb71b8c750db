//! `sdk/js/src/client.js` asks the page for a new token when the server closes a session with 4001
//! `token expired`: `tests/node/client_token_refresh.mjs` runs the real client module in
//! Node.js (>= 20, `--experimental-websocket`) against a real server with a 2-second token
//! and `jwt_leeway_secs = 0`, and fails unless the first close is 4001, `getToken` is called
//! again with `expired: true`, and an event published after the reconnect arrives.

//!
//! The second test runs the same script with `transport: "sse"`: the server ends the event
//! stream with `event: close` 4001, and the client must do the same over a fresh stream.

use agentcast_tests::{TestServer, run_node_script, run_node_script_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_calls_get_token_after_a_4001_close_and_resumes() {
    let server = TestServer::start_with(|c| c.jwt_leeway_secs = 0).await;
    run_node_script(&server, "client_token_refresh.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_over_sse_calls_get_token_after_a_4001_close_and_resumes() {
    let server = TestServer::start_with(|c| c.jwt_leeway_secs = 0).await;
    run_node_script_with(&server, "client_token_refresh.mjs", &["sse"]).await;
}
