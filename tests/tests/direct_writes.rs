//! Direct writes with real sockets (`agentcast_engine::sink`, `server/src/ws/sink.rs`): the
//! shard's worker writes an event to an idle client's socket itself; when the socket is full
//! (a client with a tiny receive buffer that stops reading) the frames go through the queue,
//! and the client still gets every event whole, once and in order. Connections closing while
//! events are written to them lose nothing for the connections that stay.

use std::time::Duration;

use agentcast_tests::{TestServer, WAIT, token};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn engine_stats(server: &TestServer) -> Value {
    let (status, text) = server.http("GET", "/api/v1/stats", None, b"").await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("stats json");
    v["engine"].clone()
}

/// Polls the engine stats until `done` holds (at most [`WAIT`]).
async fn stats_when(server: &TestServer, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = engine_stats(server).await;
        if done(&s) || tokio::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn publish(server: &TestServer, user: &str, i: usize, filler: &str) -> u64 {
    let (status, receipt) = server
        .publish(&json!({"user_id": user, "type": "step", "run_id": "r",
            "data": {"i": i, "filler": filler}}))
        .await;
    assert_eq!(status, 200, "{receipt}");
    receipt["seq"].as_u64().expect("seq")
}

/// The next text message as JSON, skipping pings.
async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message within the wait")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_a_tiny_receive_buffer_gets_every_event_whole_and_in_order() {
    let server = TestServer::start().await;
    // A 4 KiB receive buffer (set before connect, so the window is small from the start).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.expect("connect");
    let (mut ws, _) =
        tokio_tungstenite::client_async(server.ws_url(&format!("token={}", token("slow"))), tcp)
            .await
            .expect("upgrade");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");

    // Idle and reading: the worker writes the events itself (one at a time, each read before
    // the next is published).
    for _ in 0..5 {
        let seq = publish(&server, "slow", 0, "x").await;
        assert_eq!(next_json(&mut ws).await["seq"], seq);
    }
    // The shard publishes its counters after its command batch: wait for all five.
    let stats = stats_when(&server, |s| s["delivered"].as_u64() == Some(5)).await;
    assert!(
        stats["direct_writes"].as_u64().unwrap() >= 1,
        "an idle connection's events are written directly: {stats}"
    );
    let drained_before = stats["drained"].as_u64().unwrap();

    // Now the client stops reading while 150 events of 40 KiB each (6 MB, more than the
    // kernel's largest send buffer of 4 MiB here) are published: writes fill the socket, go
    // partial, then would block; the rest waits in the queue.
    let filler: String = (0..40 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut seqs = Vec::new();
    for i in 1..=150 {
        seqs.push(publish(&server, "slow", i, &filler).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (n, want) in seqs.iter().enumerate() {
        let e = next_json(&mut ws).await;
        assert_eq!(
            e["seq"], *want,
            "event {n} in seq order, none lost or twice"
        );
        assert_eq!(e["data"]["i"], n + 1);
        assert_eq!(e["data"]["filler"], filler.as_str(), "event {n} whole");
    }
    let stats = stats_when(&server, |s| s["delivered"].as_u64() == Some(155)).await;
    assert!(
        stats["drained"].as_u64().unwrap() > drained_before,
        "a full socket sent frames through the queue: {stats}"
    );
    // And once caught up, an event is written directly again.
    let direct = stats["direct_writes"].as_u64().unwrap();
    let last = publish(&server, "slow", 151, "y").await;
    assert_eq!(next_json(&mut ws).await["seq"], last);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = engine_stats(&server).await["direct_writes"]
            .as_u64()
            .unwrap();
        if now > direct {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the caught-up connection is written directly again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closing_while_events_are_written_lose_nothing_for_the_others() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let t = token("alice");
    let mut steady = server.connect(&t).await;
    let total = 400;
    let publisher = {
        let server = std::sync::Arc::clone(&server);
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..total {
                seqs.push(publish(&server, "alice", i, "z").await);
            }
            seqs
        })
    };
    // Devices come and go while the events are written: some read a little and close with a
    // close frame, some vanish with a reset, some close at once.
    for round in 0..40 {
        let mut d = server.connect(&t).await;
        match round % 3 {
            0 => {
                let _ = d.try_next(Duration::from_millis(5)).await;
                d.close().await;
            }
            1 => drop(d),
            _ => {
                let _ = d.try_next(Duration::from_millis(2)).await;
                drop(d);
            }
        }
    }
    let seqs = publisher.await.expect("publisher");
    for (n, want) in seqs.iter().enumerate() {
        let e = steady.next_json().await;
        assert_eq!(
            e["seq"], *want,
            "event {n} once, in order, on the device that stayed"
        );
    }
    steady.expect_silence(Duration::from_millis(200)).await;
    // Every closed device is unregistered.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = engine_stats(&server).await;
        if stats["connections"] == 1 {
            assert!(stats["direct_writes"].as_u64().unwrap() > 0, "{stats}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "closed devices unregistered: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server still serves.
    let (status, body) = server.http("GET", "/readyz", None, b"").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_direct_writes_off_every_event_goes_through_the_queue() {
    let server = TestServer::start_with(|c| c.direct_writes = false).await;
    let mut c = server.connect(&token("bob")).await;
    let mut seqs = Vec::new();
    for i in 0..20 {
        seqs.push(publish(&server, "bob", i, "q").await);
    }
    for want in &seqs {
        assert_eq!(c.next_json().await["seq"], *want);
    }
    let stats = stats_when(&server, |s| s["delivered"].as_u64() == Some(20)).await;
    assert_eq!(stats["delivered"], 20, "{stats}");
    assert_eq!(stats["direct_writes"], 0, "{stats}");
}
