//! Publishers cannot grow the node's tables without bound: past `max_users` the least
//! recently active offline user is evicted (its resume gets a `gap`), past
//! `max_history_bytes_per_user` a user keeps only its newest events that fit, past
//! `max_history_bytes` offline users are evicted, and a user's history is cut to its tier's
//! `history_len` when the event is stored (a user never seen gets the free tier's length).

use std::time::Duration;

use agentcast_tests::{Client, TestServer, WAIT, token};
use serde_json::{Value, json};

/// Publishes `items` as one batch and returns the seq of each.
async fn publish_batch(server: &TestServer, items: &[Value]) -> Vec<u64> {
    server
        .publish_batch(items)
        .await
        .iter()
        .map(|r| r["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {r}")))
        .collect()
}

fn event(user: &str, data: Value) -> Value {
    json!({"user_id": user, "type": "tool_executing", "run_id": "r", "data": data})
}

/// The engine section of `/api/v1/stats`.
async fn engine_stats(server: &TestServer) -> Value {
    let (status, text) = server.http("GET", "/api/v1/stats", None, b"").await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("stats json");
    v["engine"].clone()
}

/// Polls the stats until `done` holds (gauges are published after each command batch).
async fn stats_when(server: &TestServer, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let e = engine_stats(server).await;
        if done(&e) || tokio::time::Instant::now() > deadline {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` missing from {v}"))
}

/// Reads exactly `n` messages (a resume's gap and replay), then checks that nothing else
/// follows. A `ping`/`pong` sync cannot stand in for the count: the session answers a ping
/// itself, so its pong can overtake replay frames still queued in the engine.
async fn take(c: &mut Client, n: usize) -> Vec<Value> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        got.push(c.next_json().await);
    }
    c.expect_silence(Duration::from_millis(200)).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_past_max_users_evicts_the_least_recent_offline_user_with_a_gap() {
    const MAX: u64 = 40;
    let server = TestServer::start_with(|c| {
        c.max_users = MAX as usize;
        c.health.canary = false;
    })
    .await;
    // 400 distinct offline users, oldest first.
    let items: Vec<Value> = (0..400)
        .map(|i| event(&format!("flood-{i}"), json!({"i": i})))
        .collect();
    let mut seqs = Vec::new();
    for chunk in items.chunks(100) {
        seqs.extend(publish_batch(&server, chunk).await);
    }
    let e = stats_when(&server, |e| {
        e["users_evicted_over_limit"].as_u64() >= Some(360)
    })
    .await;
    assert!(n(&e, "users") <= MAX, "users stay within max_users: {e}");
    assert!(
        n(&e, "users_evicted_over_limit") >= 400 - MAX,
        "every user past the bound evicted one: {e}"
    );
    // The first user was evicted: resuming from before its event is told of the loss.
    let t0 = token("flood-0");
    let mut c = server
        .connect_query(&format!("token={t0}&last_seq={}", seqs[0] - 1))
        .await
        .expect("connect");
    let got = take(&mut c, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "gap", "{got:?}");
    assert_eq!(got[0]["from"], seqs[0]);
    assert!(got[0]["to"].as_u64() >= Some(seqs[0]), "{got:?}");
    // The last user is the most recent: kept, its event waits for it.
    let mut last = server.connect(&token("flood-399")).await;
    let got = take(&mut last, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["seq"], seqs[399]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_max_history_bytes_per_user_keeps_what_fits_and_a_resume_gets_a_gap() {
    const PER_USER: usize = 64 * 1024;
    let server = TestServer::start_with(|c| {
        c.max_history_bytes_per_user = PER_USER;
        c.health.canary = false;
    })
    .await;
    let pad = "x".repeat(10_000);
    let items: Vec<Value> = (0..20)
        .map(|i| event("hoarder", json!({"i": i, "pad": pad})))
        .collect();
    let seqs = publish_batch(&server, &items).await;
    // Wait until the stats count all 20 (before they are published, `history_events` reads 0).
    let e = stats_when(&server, |e| n(e, "published_user") >= 20).await;
    assert!(
        n(&e, "history_bytes") <= PER_USER as u64,
        "history within the per-user bound: {e}"
    );
    let t = token("hoarder");
    let mut c = server
        .connect_query(&format!("token={t}&last_seq={}", seqs[0] - 1))
        .await
        .expect("connect");
    let got = take(&mut c, 7).await;
    let gap = &got[0];
    assert_eq!(gap["type"], "gap", "{got:?}");
    assert_eq!(gap["from"], seqs[0]);
    let kept: Vec<u64> = got[1..]
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    // 10 KB events in 64 KiB: 6 fit; they are the newest, right after the gap.
    assert_eq!(kept.len(), 6, "{kept:?}");
    assert_eq!(kept, seqs[14..], "the newest events are kept");
    assert_eq!(gap["to"], seqs[13]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_past_max_history_bytes_evicts_the_least_recent_offline_users() {
    const NODE: usize = 256 * 1024;
    let server = TestServer::start_with(|c| {
        c.max_history_bytes = NODE;
        c.max_history_bytes_per_user = 64 * 1024;
        c.health.canary = false;
    })
    .await;
    let pad = "y".repeat(20_000);
    let mut seqs = Vec::new();
    for i in 0..40 {
        let user = format!("heavy-{i}");
        seqs.push(publish_batch(&server, &[event(&user, json!({"pad": pad}))]).await[0]);
    }
    let e = stats_when(&server, |e| {
        e["users_evicted_over_limit"].as_u64() > Some(0)
    })
    .await;
    assert!(
        n(&e, "history_bytes") <= NODE as u64,
        "history within the node bound: {e}"
    );
    assert!(n(&e, "users_evicted_over_limit") >= 40 - 12, "{e}");
    let t = token("heavy-0");
    let mut c = server
        .connect_query(&format!("token={t}&last_seq={}", seqs[0] - 1))
        .await
        .expect("connect");
    let got = take(&mut c, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "gap", "{got:?}");
    assert_eq!(got[0]["from"], seqs[0]);
    // The newest user still has its event.
    let mut last = server.connect(&token("heavy-39")).await;
    let got = take(&mut last, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["seq"], seqs[39]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_user_never_seen_holds_its_tier_history_len_when_events_are_stored() {
    let server = TestServer::start_with(|c| c.health.canary = false).await;
    let items: Vec<Value> = (0..1000)
        .map(|i| event("newcomer", json!({"i": i})))
        .collect();
    let seqs = publish_batch(&server, &items).await;
    // Stored at the free tier's length, before any connection.
    // Wait until the stats count all 1,000 (before they are published, `history_events` reads
    // 0, which a `<= 100` wait would take for the answer: a CI failure).
    let e = stats_when(&server, |e| n(e, "published_user") >= 1000).await;
    assert_eq!(n(&e, "history_events"), 100, "{e}");
    let mut c = server.connect(&token("newcomer")).await;
    let got = take(&mut c, 101).await;
    assert_eq!(got[0]["type"], "gap", "{:?}", &got[..2]);
    assert_eq!(got[0]["to"], seqs[899]);
    let kept: Vec<u64> = got[1..]
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, seqs[900..], "the newest 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_keeps_the_history_len_of_its_last_connections_tier_while_offline() {
    let server = TestServer::start_with(|c| c.health.canary = false).await;
    let t = agentcast_tests::token_with("big", json!({"tier": "enterprise"}));
    server.connect(&t).await.close().await;
    let items: Vec<Value> = (0..1000).map(|i| event("big", json!({"i": i}))).collect();
    publish_batch(&server, &items).await;
    let e = stats_when(&server, |e| e["history_events"].as_u64() >= Some(1000)).await;
    assert_eq!(n(&e, "history_events"), 1000, "enterprise keeps 5,000: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_users_are_never_evicted_by_max_users() {
    let server = TestServer::start_with(|c| {
        c.max_users = 4;
        c.health.canary = false;
    })
    .await;
    let names: Vec<String> = (0..6).map(|i| format!("online-{i}")).collect();
    let mut clients = Vec::new();
    let mut before = Vec::new();
    for name in &names {
        let mut c = server.connect(&token(name)).await;
        let seq = server.publish_user(name, json!({"n": 1})).await;
        assert_eq!(c.next_json().await["seq"], seq);
        before.push(seq);
        clients.push(c);
    }
    let flood: Vec<Value> = (0..200)
        .map(|i| event(&format!("passer-{i}"), json!({})))
        .collect();
    publish_batch(&server, &flood).await;
    let e = stats_when(&server, |e| {
        e["users_evicted_over_limit"].as_u64() >= Some(190)
    })
    .await;
    assert!(n(&e, "users_evicted_over_limit") >= 190, "{e}");
    // Each connected user kept its state: its seqs continue where they were.
    for ((name, c), seq) in names.iter().zip(&mut clients).zip(&before) {
        let next = server.publish_user(name, json!({"n": 2})).await;
        assert_eq!(next, seq + 1, "{name} kept its seq");
        assert_eq!(c.next_json().await["seq"], next);
    }
}
