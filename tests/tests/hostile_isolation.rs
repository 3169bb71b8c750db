//! Isolation under concurrency: 1,000 users, each with two connections that stay open and
//! churn connections that come and go at random (clean closes and abrupt drops), while a
//! publisher sends thousands of events to random users. Zero events reach a connection of
//! another user (live or replayed), and the connections that stayed open receive every event
//! of their user, in seq order.

mod hostile;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agentcast_tests::{API_KEY, Incoming, TestServer, token};
use futures_util::StreamExt;
use futures_util::future::join_all;
use hostile::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const USERS: usize = 1000;
const STABLE_PER_USER: usize = 2;
const BATCHES: usize = 20;
const BATCH: usize = 500;

fn user(i: usize) -> String {
    format!("iso-{i}")
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON text message (pings are answered by tungstenite while reading), waiting at
/// most 60 s.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a message within 60 s");
        match msg {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("stable connection ended: {other:?}"),
        }
    }
}

/// xorshift64: the tests crate has no RNG dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cross_user_delivery_and_no_loss_under_churn() {
    let server = Arc::new(TestServer::start().await);
    let mut probe = Probe::connect(&server, "isolation").await;
    let ledger = Ledger::start("isolation", &server, 1).await;
    let start = Instant::now();

    // 2,000 stable connections, opened 100 at a time. Their readers wait as long as the run
    // takes (a user may get no event for a while), so they use the socket directly rather
    // than the harness client and its 5 s wait.
    let mut stable = Vec::new();
    for chunk in (0..USERS * STABLE_PER_USER).collect::<Vec<_>>().chunks(100) {
        let conns = join_all(chunk.iter().map(|&i| {
            let server = Arc::clone(&server);
            async move {
                let u = user(i % USERS);
                let (mut ws, _) = tokio_tungstenite::connect_async(
                    server.ws_url(&format!("token={}", token(&u))),
                )
                .await
                .expect("stable connection");
                let w = next_json(&mut ws).await;
                assert_eq!(
                    (w["type"].as_str(), w["user_id"].as_str()),
                    (Some("welcome"), Some(u.as_str()))
                );
                (u, ws)
            }
        }))
        .await;
        stable.extend(conns);
    }
    println!(
        "{} stable connections in {:?}",
        stable.len(),
        start.elapsed()
    );
    let cross = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = stable
        .into_iter()
        .map(|(u, mut ws)| {
            let cross = Arc::clone(&cross);
            tokio::spawn(async move {
                let mut ks = Vec::new();
                let mut last_seq = 0;
                loop {
                    let v = next_json(&mut ws).await;
                    if v["data"]["u"] != u.as_str() {
                        cross.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let seq = v["seq"].as_u64().expect("user events carry a seq");
                    assert!(seq > last_seq, "{u}: seq {seq} after {last_seq}");
                    last_seq = seq;
                    if v["data"]["end"] == true {
                        return (u, ks);
                    }
                    ks.push(v["data"]["k"].as_u64().unwrap());
                }
            })
        })
        .collect();

    // Churn: 32 tasks connect a random user's extra connection, read for 0–100 ms, and leave
    // (half with a close, half by dropping the socket), until publishing is over.
    let done = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let churn: Vec<_> = (0..32u64)
        .map(|t| {
            let (server, done, cross, churned) = (
                Arc::clone(&server),
                Arc::clone(&done),
                Arc::clone(&cross),
                Arc::clone(&churned),
            );
            tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1));
                while !done.load(Ordering::Relaxed) {
                    let u = user(rng.below(USERS));
                    let mut c = server.connect(&token(&u)).await;
                    let until = Instant::now() + Duration::from_millis(rng.below(100) as u64);
                    while let Ok(Incoming::Json(v)) =
                        tokio::time::timeout_at(until.into(), c.next()).await
                    {
                        if v["data"]["u"] != u.as_str() {
                            cross.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if rng.below(2) == 0 {
                        c.close().await;
                    } else {
                        drop(c);
                    }
                    churned.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // The publisher: 20 batches of 500 events to random users.
    let mut rng = Rng(42);
    let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
    let mut k = 0u64;
    for b in 0..BATCHES {
        if b == BATCHES / 2 {
            probe.check(&server, "mid-publishing, under churn").await;
        }
        let items: Vec<Value> = (0..BATCH)
            .map(|_| {
                k += 1;
                let u = user(rng.below(USERS));
                sent.entry(u.clone()).or_default().push(k);
                json!({"user_id": u, "type": "tool_executing", "run_id": "r", "data": {"u": u, "k": k}})
            })
            .collect();
        let (status, resp) = server
            .http(
                "POST",
                "/api/v1/publish/batch",
                Some(API_KEY),
                Value::Array(items).to_string().as_bytes(),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        let results: Vec<Value> = serde_json::from_str(&resp).unwrap();
        assert!(results.iter().all(|r| r["seq"].is_u64()), "{resp}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    probe.check(&server, "isolation under churn").await;
    done.store(true, Ordering::Relaxed);
    for c in churn {
        c.await.expect("churn task");
    }
    // The end marker, one per user.
    let ends: Vec<Value> = (0..USERS)
        .map(|i| json!({"user_id": user(i), "type": "tool_executing", "run_id": "r", "data": {"u": user(i), "end": true}}))
        .collect();
    let (status, _) = server
        .http(
            "POST",
            "/api/v1/publish/batch",
            Some(API_KEY),
            Value::Array(ends).to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200);

    let mut lost = 0;
    for r in readers {
        let (u, ks) = r.await.expect("reader");
        let want = sent.get(&u).cloned().unwrap_or_default();
        if ks != want {
            lost += want.len().saturating_sub(ks.len()).max(1);
        }
    }
    let cross = cross.load(Ordering::Relaxed);
    let churned = churned.load(Ordering::Relaxed);
    println!(
        "isolation: {USERS} users, {} stable + {churned} churn connections, {k} events: \
         {cross} cross-user deliveries, {lost} lost, in {:?}",
        USERS * STABLE_PER_USER,
        start.elapsed()
    );
    assert_eq!(cross, 0, "events delivered to another user's connection");
    assert_eq!(lost, 0, "events lost on connections that stayed open");
    ledger.cases(churned as usize);
    probe.check(&server, "after isolation").await;
    // Users given state after the baseline: iso-0..USERS.
    ledger
        .finish(&server, &probe, 256 * 1024, USERS as u64)
        .await;
}
