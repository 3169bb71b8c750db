//! Cluster mode with the real binary: a node killed with SIGKILL loses nothing stored, its
//! clients resume on another node with `last_seq` and get every event published meanwhile
//! (no gap within the history window); and when every node restarts (Redis kept), history,
//! ack cursors and offline users' events are all still there.

use std::path::Path;
use std::time::{Duration, Instant};

use agentcast_tests::{API_KEY, BinaryServer, RedisServer, SECRET, TestServer, token};
use serde_json::{Value, json};

fn node(redis: &RedisServer, name: &str) -> BinaryServer {
    BinaryServer::spawn(
        Path::new(env!("CARGO_BIN_EXE_agentcast")),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            &redis.url(),
            "--node-id",
            name,
        ],
        &[
            ("AGENTCAST_JWT_SECRET", SECRET),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    )
}

async fn up(api: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = api.http("GET", "/readyz", None, b"").await;
        if s == 200 && b.contains(r#""kind":"redis""#) {
            return;
        }
        assert!(Instant::now() < deadline, "node not ready: {s} {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn seqs_of(events: Vec<Value>) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            assert_ne!(e["type"], "gap", "no gap expected: {events:?}");
            e["seq"].as_u64().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_clients_resume_on_another_node_without_a_gap() {
    let redis = RedisServer::start();
    let mut a = node(&redis, "a");
    let b = node(&redis, "b");
    let (api_a, api_b) = (a.api(), b.api());
    up(&api_a).await;
    up(&api_b).await;
    let t = token("k");
    let mut client = api_a.connect(&t).await;
    let mut last = 0;
    for i in 0..3 {
        let seq = api_b.publish_user("k", json!({"i": i})).await;
        assert_eq!(client.next_json().await["seq"].as_u64(), Some(seq));
        last = seq;
    }
    a.kill();
    assert_eq!(
        client.closed().await,
        None,
        "the connection died with its node"
    );
    let mut meanwhile = Vec::new();
    for i in 3..8 {
        meanwhile.push(api_b.publish_user("k", json!({"i": i})).await);
    }
    let mut resumed = api_b
        .connect_query(&format!("token={t}&last_seq={last}"))
        .await
        .unwrap();
    assert_eq!(seqs_of(resumed.take(5).await).await, meanwhile);
    resumed.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restarted_keeps_history_acks_and_offline_events() {
    let redis = RedisServer::start();
    let mut a = node(&redis, "a");
    let mut b = node(&redis, "b");
    up(&a.api()).await;
    up(&b.api()).await;
    let t = token("durable");
    let mut seqs = Vec::new();
    for i in 0..4 {
        seqs.push(a.api().publish_user("durable", json!({"i": i})).await);
    }
    let mut client = b.api().connect(&t).await;
    assert_eq!(seqs_of(client.take(4).await).await, seqs);
    client
        .send_json(&json!({"type": "ack", "seq": seqs[1]}))
        .await;
    client.sync().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Published while nobody is connected, just before the restart.
    seqs.push(a.api().publish_user("durable", json!({"i": 4})).await);
    for n in [&a, &b] {
        n.sigterm();
    }
    for n in [&mut a, &mut b] {
        assert!(n.wait_exit(Duration::from_secs(15)).success());
    }

    let a = node(&redis, "a2");
    let b = node(&redis, "b2");
    up(&a.api()).await;
    up(&b.api()).await;
    // From the ack cursor: the unacknowledged events, the offline one included.
    let mut again = a.api().connect(&t).await;
    assert_eq!(again.welcome["last_seq"].as_u64(), Some(seqs[4]));
    assert_eq!(seqs_of(again.take(3).await).await, seqs[2..]);
    again.close().await;
    // With `last_seq` on the other node: exactly what followed.
    let mut resumed = b
        .api()
        .connect_query(&format!("token={t}&last_seq={}", seqs[0]))
        .await
        .unwrap();
    assert_eq!(seqs_of(resumed.take(4).await).await, seqs[1..]);
    // Seqs continue from where they were.
    let next = a.api().publish_user("durable", json!({"i": 5})).await;
    assert_eq!(next, seqs[4] + 1);
    assert_eq!(resumed.next_json().await["seq"].as_u64(), Some(next));
}
