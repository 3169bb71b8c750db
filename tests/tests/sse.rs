//! `GET /sse`, server-sent events as a second client transport, against a real server over
//! real sockets: the stream's headers and first events, user and channel events as
//! `id:`/`event:`/`data:` with the WebSocket payload byte for byte, heartbeats, resume
//! (`Last-Event-ID`, `?last_seq=`, gaps), acks with `POST /api/v1/ack`, limits shared with
//! WebSocket connections, the closes (token expiry, shutdown, slow consumer) and refusals;
//! and one third-party client (Python `httpx`).

use std::time::Duration;

use agentcast_tests::{
    API_KEY, PyClient, SECRET, SseClient, SseItem, TestServer, WAIT, now, sign_hs256, token,
    token_with,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Opens `/sse?token=...{extra}` and reads through the welcome.
async fn open(server: &TestServer, t: &str, extra: &str) -> (SseClient, Value) {
    let mut c = SseClient::open(server, &format!("/sse?token={t}{extra}"), &[])
        .await
        .unwrap_or_else(|r| panic!("refused: {r:?}"));
    assert_eq!(c.next().await, SseItem::Retry(2000));
    let (id, event, welcome) = c.next_json().await;
    assert_eq!((id, event.as_deref()), (None, Some("welcome")), "{welcome}");
    (c, welcome)
}

/// `POST /api/v1/ack` with `bearer` and `body`.
async fn ack(server: &TestServer, bearer: Option<&str>, body: &str) -> (u16, Value) {
    let (s, b) = server
        .http("POST", "/api/v1/ack", bearer, body.as_bytes())
        .await;
    (s, serde_json::from_str(&b).unwrap_or(Value::Null))
}

async fn stats(server: &TestServer) -> Value {
    let (_, s) = server.http("GET", "/api/v1/stats", None, b"").await;
    serde_json::from_str(&s).expect("stats JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_has_event_stream_headers_then_retry_then_welcome() {
    let server = TestServer::start().await;
    let mut c = SseClient::open(&server, &format!("/sse?token={}", token("ann")), &[])
        .await
        .expect("200");
    assert_eq!(c.header("content-type"), Some("text/event-stream"));
    assert_eq!(c.header("cache-control"), Some("no-cache"));
    assert_eq!(c.header("x-accel-buffering"), Some("no"));
    assert_eq!(c.next().await, SseItem::Retry(2000));
    let (id, event, w) = c.next_json().await;
    assert_eq!(id, None);
    assert_eq!(event.as_deref(), Some("welcome"));
    assert_eq!(w["type"], "welcome");
    assert_eq!(w["user_id"], "ann");
    assert_eq!(w["tier"], "free");
    assert_eq!(w["heartbeat_ms"], 25_000);
    assert!(w["conn_id"].is_u64() && w["last_seq"].is_u64(), "{w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_are_id_event_data_with_the_websocket_payload_byte_for_byte() {
    let server = TestServer::start().await;
    let t = token("bo");
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(&format!("token={t}")))
        .await
        .expect("ws connect");
    let (mut sse, _) = open(&server, &t, "").await;
    let mut ws_text = async || loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("ws frame")
        {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(_)) => {}
            other => panic!("ws ended: {other:?}"),
        }
    };
    assert!(ws_text().await.contains("\"welcome\""));
    let data = json!({"nested": {"a": [1, 2.5, null, true]}, "text": "héllo \"q\" \\ \u{1F600}"});
    let seq = server.publish_user("bo", data).await;
    let (s, r) = server
        .publish(&json!({"user_id": "bo", "type": "custom.step", "run_id": "r2", "data": {}}))
        .await;
    assert_eq!(s, 200, "{r}");
    for (kind, seq) in [
        ("tool_executing", seq),
        ("custom.step", r["seq"].as_u64().unwrap()),
    ] {
        let frame = ws_text().await;
        let (id, event, payload) = sse.next_event().await;
        assert_eq!(payload, frame, "SSE data is the WebSocket payload");
        assert_eq!(id, Some(seq.to_string()));
        assert_eq!(event.as_deref(), Some(kind));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_at_connect_are_subscribed_and_events_have_no_id() {
    let server = TestServer::start().await;
    let t = token_with("cy", json!({"channels": ["job:*"]}));
    let (mut c, _) = open(&server, &t, "&channels=job:1,job:2").await;
    for ch in ["job:2", "job:1", "job:3"] {
        let (s, r) = server
            .publish(&json!({"channel": ch, "type": "custom.progress", "run_id": "r", "data": {"ch": ch}}))
            .await;
        assert_eq!(s, 200, "{r}");
    }
    for ch in ["job:2", "job:1"] {
        let (id, event, v) = c.next_json().await;
        assert_eq!(id, None, "channel events carry no seq, so no id");
        assert_eq!(event.as_deref(), Some("custom.progress"));
        assert_eq!(v["channel"], ch);
    }
    // job:3 was not asked for: nothing more arrives (a user event proves the order).
    let seq = server.publish_user("cy", json!({})).await;
    let (id, _, _) = c.next_json().await;
    assert_eq!(id, Some(seq.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_the_token_does_not_grant_is_403_and_an_invalid_one_400() {
    let server = TestServer::start().await;
    let t = token_with("di", json!({"channels": ["job:*"]}));
    let (s, body) = SseClient::open(
        &server,
        &format!("/sse?token={t}&channels=job:1,team:x"),
        &[],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(s, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("team:x"), "{body}");
    let (s, body) = SseClient::open(
        &server,
        &format!("/sse?token={t}&channels=job:1,bad%20name"),
        &[],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(s, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("bad name"),
        "{body}"
    );
    // Over the tier's subscriptions per connection.
    let server = TestServer::start_with(|c| c.tiers.free.subscriptions_per_connection = 1).await;
    let (s, body) = SseClient::open(
        &server,
        &format!("/sse?token={t}&channels=job:1,job:2"),
        &[],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(s, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("subscription limit"),
        "{body}"
    );
    assert_eq!(stats(&server).await["server"]["ws_open"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_comments_come_every_heartbeat_ms() {
    let server = TestServer::start_with(|c| c.heartbeat_ms = 100).await;
    let (mut c, w) = open(&server, &token("ed"), "").await;
    assert_eq!(w["heartbeat_ms"], 100);
    for _ in 0..3 {
        assert_eq!(c.next().await, SseItem::Comment("ping".into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_after_it() {
    let server = TestServer::start().await;
    let t = token("flo");
    let (mut c, _) = open(&server, &t, "").await;
    let mut seqs = Vec::new();
    for i in 0..4 {
        seqs.push(server.publish_user("flo", json!({"i": i})).await);
    }
    let mut last_id = None;
    for s in &seqs {
        let (id, _, v) = c.next_json().await;
        assert_eq!(v["seq"], *s);
        last_id = id;
    }
    drop(c);
    // What `EventSource` does on reconnect: the last id it saw. Here, after the 2nd event.
    let id = seqs[1].to_string();
    assert_eq!(last_id, Some(seqs[3].to_string()));
    let mut r = SseClient::open(
        &server,
        &format!("/sse?token={t}&last_seq=0"),
        &[("Last-Event-ID", &id)],
    )
    .await
    .expect("200");
    assert_eq!(r.next().await, SseItem::Retry(2000));
    assert_eq!(r.next_json().await.1.as_deref(), Some("welcome"));
    for s in &seqs[2..] {
        assert_eq!(r.next_json().await.0, Some(s.to_string()));
    }
    let next = server.publish_user("flo", json!({})).await;
    assert_eq!(
        r.next_json().await.0,
        Some(next.to_string()),
        "nothing else was replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seq_resumes_and_a_lost_range_comes_as_a_gap_event() {
    let server = TestServer::start_with(|c| c.tiers.free.history_len = 3).await;
    let t = token("gus");
    let mut seqs = Vec::new();
    for i in 0..6 {
        seqs.push(server.publish_user("gus", json!({"i": i})).await);
    }
    let (mut c, _) = open(&server, &t, &format!("&last_seq={}", seqs[0])).await;
    let (id, event, gap) = c.next_json().await;
    assert_eq!((id, event.as_deref()), (None, Some("gap")), "{gap}");
    assert_eq!(gap["type"], "gap");
    assert_eq!(
        (gap["from"].clone(), gap["to"].clone()),
        (json!(seqs[1]), json!(seqs[2]))
    );
    for s in &seqs[3..] {
        assert_eq!(c.next_json().await.0, Some(s.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_by_post_moves_the_replay_point_of_the_next_connect() {
    let server = TestServer::start().await;
    let t = token("hal");
    let (mut c, _) = open(&server, &t, "").await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(server.publish_user("hal", json!({"i": i})).await);
    }
    for s in &seqs {
        assert_eq!(c.next_json().await.0, Some(s.to_string()));
    }
    let (s, body) = ack(&server, Some(&t), &format!("{{\"seq\": {}}}", seqs[1])).await;
    assert_eq!((s, body), (200, json!({"acked": seqs[1]})));
    drop(c);
    // No Last-Event-ID: replay from the ack cursor, so only the third comes again.
    let (mut again, w) = open(&server, &t, "").await;
    assert_eq!(w["last_seq"], seqs[2]);
    assert_eq!(again.next_json().await.0, Some(seqs[2].to_string()));
    let next = server.publish_user("hal", json!({})).await;
    assert_eq!(again.next_json().await.0, Some(next.to_string()));
    // A WebSocket client of the same user starts after the ack too.
    let mut ws = server.connect(&t).await;
    assert_eq!(
        ws.take(2)
            .await
            .iter()
            .map(|v| v["seq"].clone())
            .collect::<Vec<_>>(),
        [json!(seqs[2]), json!(next)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_needs_the_clients_own_token_and_a_seq() {
    let server = TestServer::start().await;
    let (s, b) = ack(&server, None, r#"{"seq": 1}"#).await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = ack(&server, Some(API_KEY), r#"{"seq": 1}"#).await;
    assert_eq!(s, 401, "the publish key is not a client token: {b}");
    let bad = sign_hs256(
        &json!({"sub": "x", "exp": now() + 60}),
        "another-secret-of-32-bytes-at-least!",
    );
    assert_eq!(ack(&server, Some(&bad), r#"{"seq": 1}"#).await.0, 401);
    let t = token("ida");
    for body in [
        "",
        "{}",
        r#"{"seq": -1}"#,
        r#"{"seq": "1"}"#,
        "[1]",
        "{\"seq\": 1",
    ] {
        let (s, b) = ack(&server, Some(&t), body).await;
        assert_eq!(s, 400, "{body:?}: {b}");
        assert!(b["error"].is_string());
    }
    let (s, _) = ack(
        &server,
        Some(&t),
        &format!("{{\"seq\": 1, \"pad\": \"{}\"}}", "x".repeat(4096)),
    )
    .await;
    assert_eq!(s, 413);
    let (s, _) = server.http("GET", "/api/v1/ack", Some(&t), b"").await;
    assert_eq!(s, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_counts_sse_and_websocket_connections_together() {
    let server = TestServer::start_with(|c| c.tiers.free.connections_per_user = 2).await;
    let t = token("jo");
    let ws = server.connect(&t).await;
    let (sse, _) = open(&server, &t, "").await;
    let st = stats(&server).await;
    assert_eq!(st["server"]["ws_open"], 2, "{st}");
    assert_eq!(st["server"]["sse_open"], 1, "{st}");
    let (s, body) = SseClient::open(&server, &format!("/sse?token={t}"), &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(s, 429, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("tier free"),
        "{body}"
    );
    assert_eq!(server.refused(&format!("token={t}")).await.0, 429);
    // Closing the stream frees its slot for a WebSocket connection.
    drop(sse);
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.connect_query(&format!("token={t}")).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the SSE slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(ws);
    let (_, metrics) = server.http("GET", "/metrics", None, b"").await;
    assert!(
        metrics.contains("agentcast_server_sse_accepted_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_connection_limit_counts_sse_streams() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 1).await;
    let (_sse, _) = open(&server, &token("ka"), "").await;
    let (s, body) = SseClient::open(&server, &format!("/sse?token={}", token("kb")), &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(s, 503, "{body}");
    assert_eq!(
        server.refused(&format!("token={}", token("kb"))).await.0,
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_with_a_4001_close_when_the_token_expires() {
    let server = TestServer::start_with(|c| c.jwt_leeway_secs = 0).await;
    let exp = now() + 3;
    let short = sign_hs256(&json!({"sub": "lu", "exp": exp}), SECRET);
    let (mut c, _) = open(&server, &short, "").await;
    let seq = server.publish_user("lu", json!({})).await;
    assert_eq!(c.next_json().await.0, Some(seq.to_string()));
    let close = loop {
        match c
            .next_within(Duration::from_secs(3) + WAIT)
            .await
            .expect("close within exp + wait")
        {
            SseItem::Event {
                event: Some(e),
                data,
                ..
            } if e == "close" => break data,
            SseItem::End => panic!("ended without a close event"),
            _ => {}
        }
    };
    assert!(now() >= exp, "closed before exp");
    let close: Value = serde_json::from_str(&close).unwrap();
    assert_eq!(close, json!({"code": 4001, "reason": "token expired"}));
    assert!(
        c.ends_within(WAIT).await,
        "the response ends after the close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_every_queued_event_then_a_1001_close() {
    let mut server = TestServer::start().await;
    let (mut c, _) = open(&server, &token("max"), "").await;
    let mut seqs = Vec::new();
    for i in 0..20 {
        seqs.push(server.publish_user("max", json!({"i": i})).await);
    }
    server.shutdown().await.expect("run returns Ok");
    for s in &seqs {
        assert_eq!(c.next_json().await.0, Some(s.to_string()));
    }
    let (_, event, close) = c.next_json().await;
    assert_eq!(event.as_deref(), Some("close"));
    assert_eq!(
        close,
        json!({"code": 1001, "reason": "server shutting down"})
    );
    assert!(c.ends_within(WAIT).await);
}

/// A reader that stops reading while far more critical events are published than its
/// buffers hold (socket buffers, hyper's, the engine's ring): the engine closes it with 1013
/// instead of queuing without bound, and it sees that close once it reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_closed_with_1013() {
    const EVENTS: usize = 1200;
    let server = TestServer::start_with(|c| c.limits.write_timeout_ms = 120_000).await;
    let (mut c, _) = open(&server, &token("ned"), "").await;
    let blob = "x".repeat(60 * 1024);
    let mut published = 0;
    for i in 0..EVENTS {
        let (s, r) = server
            .publish(&json!({"user_id": "ned", "type": "agent_started", "run_id": format!("r{i}"), "data": {"blob": blob}}))
            .await;
        assert_eq!(s, 200, "{r}");
        published += 1;
        if r["connections"] == 0 {
            break; // the engine already closed the connection
        }
    }
    let mut received = 0;
    let close = loop {
        let (_, event, v) = c.next_json().await;
        if event.as_deref() == Some("close") {
            break v;
        }
        received += 1;
    };
    assert_eq!(close["code"], 1013, "{close}");
    assert!(
        received < published,
        "{received} of {published} received: nothing was cut"
    );
    assert!(c.ends_within(WAIT).await);
    assert_eq!(stats(&server).await["server"]["ws_open"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_401_and_a_bad_resume_400() {
    let server = TestServer::start().await;
    for q in ["/sse", "/sse?token=nope"] {
        let (s, b) = SseClient::open(&server, q, &[])
            .await
            .err()
            .expect("refused");
        assert_eq!(s, 401, "{q}: {b}");
        assert!(b["error"].is_string());
    }
    let t = token("ola");
    for id in ["abc", "-1", "1.0", "99999999999999999999999"] {
        let (s, b) = SseClient::open(
            &server,
            &format!("/sse?token={t}"),
            &[("Last-Event-ID", id)],
        )
        .await
        .err()
        .expect("refused");
        assert_eq!(s, 400, "{id}: {b}");
    }
    let (s, _) = SseClient::open(&server, &format!("/sse?token={t}&last_seq=x"), &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(s, 400);
    let (s, _) = SseClient::open(&server, "/sse?token=%zz", &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(s, 400);
    let (s, _) = server.http("POST", "/sse", None, b"").await;
    assert_eq!(s, 405);
    // The bearer header works as the query does.
    let mut c = SseClient::open(
        &server,
        "/sse",
        &[("Authorization", &format!("Bearer {t}"))],
    )
    .await
    .expect("200 with a bearer token");
    assert_eq!(c.next().await, SseItem::Retry(2000));
}

/// A third-party SSE client: Python `httpx` streaming the response (`tests/py/sse_client.py`),
/// reading events with `id:`/`event:`/`data:`, then acking over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_httpx_reads_the_stream_and_acks() {
    let server = TestServer::start().await;
    let t = token("py-sse");
    let base = format!("http://{}", server.addr);
    let mut py = PyClient::spawn("sse_client.py", &[&base, &t, "2"], "httpx");
    py.expect_first("WELCOME py-sse").await;
    let a = server
        .publish_user("py-sse", json!({"text": "héllo"}))
        .await;
    let (s, r) = server
        .publish(&json!({"user_id": "py-sse", "type": "agent_completed", "run_id": "r"}))
        .await;
    assert_eq!(s, 200);
    let b = r["seq"].as_u64().unwrap();
    assert_eq!(
        py.next_line().await,
        Some(format!("EVENT {a} tool_executing {a}"))
    );
    assert_eq!(
        py.next_line().await,
        Some(format!("EVENT {b} agent_completed {b}"))
    );
    assert_eq!(py.next_line().await, Some(format!("ACKED {b}")));
    assert!(py.wait_success().await);
    // The ack was applied: a new stream replays nothing.
    let (mut again, _) = open(&server, &t, "").await;
    let next = server.publish_user("py-sse", json!({})).await;
    assert_eq!(again.next_json().await.0, Some(next.to_string()));
}

/// Cluster mode: a stream on one node gets what another node publishes, and an ack posted to
/// a third node holds for the next stream (the broker moves the cursor in Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_events_and_post_acks_cross_nodes() {
    let redis = agentcast_tests::RedisServer::start();
    let a = agentcast_tests::cluster_node(&redis, "a", |_| {}).await;
    let b = agentcast_tests::cluster_node(&redis, "b", |_| {}).await;
    let c = agentcast_tests::cluster_node(&redis, "c", |_| {}).await;
    let t = token("roamer");
    let (mut on_a, _) = open(&a, &t, "").await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(b.publish_user("roamer", json!({"i": i})).await);
    }
    for s in &seqs {
        assert_eq!(on_a.next_json().await.0, Some(s.to_string()));
    }
    let (s, body) = ack(&c, Some(&t), &format!("{{\"seq\": {}}}", seqs[1])).await;
    assert_eq!(s, 200, "{body}");
    drop(on_a);
    // The broker flushes acks to Redis asynchronously: reconnect until the replay starts
    // after the ack (bounded by the wait).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (mut on_b, _) = open(&b, &t, "").await;
        let first = on_b.next_json().await.0;
        if first == Some(seqs[2].to_string()) {
            break;
        }
        assert_eq!(
            first,
            Some(seqs[0].to_string()),
            "replay starts at the ack or before"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ack posted to node c never held on node b"
        );
        drop(on_b);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `n` normal events of 60 KiB to `user` (far more than socket and hyper buffers
/// hold together with the engine's ring).
async fn flood(server: &TestServer, user: &str, n: usize) {
    let blob = "x".repeat(60 * 1024);
    for i in 0..n {
        server
            .publish_user(user, json!({"i": i, "blob": blob}))
            .await;
    }
}

/// Polls `/api/v1/stats` until no client connection is open; panics after `d`.
async fn wait_no_connections(server: &TestServer, d: Duration) {
    let deadline = tokio::time::Instant::now() + d;
    while stats(server).await["server"]["ws_open"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reader that reads nothing for `write_timeout_ms` is dropped, as a WebSocket client is:
/// its slot is freed and the server closes the TCP connection (hyper could not end the
/// response on its own while the socket is full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_reads_nothing_for_the_write_timeout_is_dropped() {
    let server = TestServer::start_with(|c| c.limits.write_timeout_ms = 300).await;
    let (mut c, _) = open(&server, &token("ot"), "").await;
    flood(&server, "ot", 600).await;
    wait_no_connections(&server, WAIT).await;
    let (_, metrics) = server.http("GET", "/metrics", None, b"").await;
    assert!(
        metrics.contains("agentcast_forced_closes_total{reason=\"write_timeout\"} 1"),
        "{metrics}"
    );
    assert!(
        c.discard_until_closed(WAIT).await,
        "the TCP connection stays open"
    );
}

/// A graceful shutdown does not wait for a reader that reads nothing past
/// `shutdown_grace_ms`: the stream is given up and `run` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_a_blocked_reader_after_the_grace_period() {
    let mut server = TestServer::start_with(|c| {
        c.shutdown_grace_ms = 300;
        c.limits.write_timeout_ms = 120_000;
    })
    .await;
    let (mut c, _) = open(&server, &token("pat"), "").await;
    flood(&server, "pat", 600).await;
    server.shutdown().await.expect("run returns Ok");
    assert!(
        c.discard_until_closed(WAIT).await,
        "the TCP connection stays open"
    );
}
