//! `sdk/js/src/client.js` over server-sent events (`transport: "sse"`):
//! `tests/node/client_sse.mjs` runs the real client module in Node.js (>= 20) with the
//! `eventsource` package as its `EventSource` (from `tests/browser/node_modules`: `npm ci
//! --prefix tests/browser`) against a real dev-mode server over real sockets, and fails
//! unless a streamed message arrives byte-exact; a server close mid-message (1012) makes the
//! client open a fresh stream with `?last_seq=` that delivers exactly the rest; its acks reach
//! `POST /api/v1/ack` (a second client connecting from the ack cursor gets no replay); and
//! `subscribe()` reconnects with `?channels=` and `?last_seq=` and then receives the channel;
//! and a stream lost without `event: close` is resumed by the `EventSource`'s own reconnect
//! with `Last-Event-ID`, the event published meanwhile arriving once.

use agentcast_tests::{TestServer, run_node_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_over_sse_streams_resumes_acks_and_resubscribes_exactly() {
    let server = TestServer::start_with(|c| c.dev_mode = true).await;
    run_node_script(&server, "client_sse.mjs").await;
}
