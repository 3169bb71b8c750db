//! Idempotency keys are bound to the request they first came with: the same key and request
//! is answered with the first receipt and delivered once; the same key with a different
//! request (another user, other data) is refused with 409 and changes nothing.

use std::time::Duration;

use agentcast_tests::{API_KEY, TestServer, token};
use serde_json::{Value, json};

async fn server_stats(server: &TestServer) -> Value {
    let (_, body) = server.http("GET", "/api/v1/stats", None, b"").await;
    serde_json::from_str(&body).expect("stats JSON")
}

async fn batch(server: &TestServer, items: &[Value]) -> Vec<Value> {
    let (s, b) = server
        .http(
            "POST",
            "/api/v1/publish/batch",
            Some(API_KEY),
            Value::Array(items.to_vec()).to_string().as_bytes(),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    serde_json::from_str(&b).expect("batch results")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_and_same_request_returns_the_first_receipt_and_delivers_once() {
    let server = TestServer::start().await;
    let mut alice = server.connect(&token("alice")).await;
    let req = json!({"user_id": "alice", "type": "agent_started", "run_id": "r",
        "data": {"step": 1}, "idempotency_key": "k-same"});
    // The same fields in another member order are the same request.
    let reordered = json!({"idempotency_key": "k-same", "data": {"step": 1}, "run_id": "r",
        "type": "agent_started", "user_id": "alice"});
    let (s1, r1) = server.publish(&req).await;
    let (s2, r2) = server.publish(&reordered).await;
    assert_eq!((s1, s2), (200, 200), "{r1} {r2}");
    assert_eq!(r1, r2);
    assert_eq!(batch(&server, &[req]).await, vec![r1.clone()]);
    let ev = alice.next_json().await;
    assert_eq!(ev["seq"], r1["seq"], "{ev}");
    assert!(alice.sync().await.is_empty(), "delivered more than once");
    assert_eq!(
        server_stats(&server).await["server"]["publish_idempotent_replays"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_for_another_user_is_refused_with_409_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut alice = server.connect(&token("alice")).await;
    let mut bob = server.connect(&token("bob")).await;
    let bob_last_seq = bob.welcome["last_seq"].clone();
    let to_alice = json!({"user_id": "alice", "type": "agent_completed", "run_id": "r",
        "data": {"answer": 42}, "idempotency_key": "k-shared"});
    let (s, first) = server.publish(&to_alice).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(alice.next_json().await["seq"], first["seq"]);

    let mut to_bob = to_alice.clone();
    to_bob["user_id"] = json!("bob");
    let (s, refused) = server.publish(&to_bob).await;
    assert_eq!(s, 409, "{refused}");
    let msg = refused["error"].as_str().expect("JSON error");
    assert!(
        msg.contains("idempotency_key") && msg.contains("k-shared") && msg.contains("different"),
        "{msg}"
    );

    // Nothing delivered to anyone, nothing stored for bob.
    assert!(bob.sync().await.is_empty(), "bob received something");
    assert!(alice.sync().await.is_empty(), "alice received it again");
    bob.close().await;
    let mut bob_again = server.connect(&token("bob")).await;
    assert_eq!(bob_again.welcome["last_seq"], bob_last_seq);
    bob_again.expect_silence(Duration::from_millis(300)).await;
    // The key still answers its own request with the first receipt.
    let (s, again) = server.publish(&to_alice).await;
    assert_eq!((s, &again), (200, &first));
    assert!(alice.sync().await.is_empty());
    let stats = server_stats(&server).await;
    assert_eq!(
        stats["server"]["publish_idempotency_conflicts"], 1,
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_for_the_same_user_with_other_data_is_refused_with_409() {
    let server = TestServer::start().await;
    let mut alice = server.connect(&token("alice")).await;
    let req = json!({"user_id": "alice", "type": "tool_executing", "run_id": "r",
        "data": {"tool": "search"}, "idempotency_key": "k-data"});
    let (s, first) = server.publish(&req).await;
    assert_eq!(s, 200, "{first}");
    let mut other = req.clone();
    other["data"] = json!({"tool": "delete_everything"});
    let (s, refused) = server.publish(&other).await;
    assert_eq!(s, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|m| m.contains("k-data"))
    );
    let mut other_priority = req.clone();
    other_priority["priority"] = json!("critical");
    assert_eq!(server.publish(&other_priority).await.0, 409);
    // Read the one event, then check nothing follows (a `sync` pong, written by the session
    // itself, can overtake a frame still queued in the engine: a CI failure).
    let got = alice.take(1).await;
    alice.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(got[0]["data"], json!({"tool": "search"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_key_fails_its_batch_item_alone() {
    let server = TestServer::start().await;
    let mut alice = server.connect(&token("alice")).await;
    let mut bob = server.connect(&token("bob")).await;
    let keyed = json!({"user_id": "alice", "type": "agent_started", "run_id": "r",
        "idempotency_key": "k-batch"});
    let mut reused = keyed.clone();
    reused["user_id"] = json!("bob");
    let plain = json!({"user_id": "bob", "type": "custom_note", "data": {"n": 1}});
    let results = batch(&server, &[keyed.clone(), reused, plain, keyed]).await;
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(results[0]["seq"].is_u64(), "{results:?}");
    let err = results[1]["error"].as_str().expect("item error");
    assert!(
        err.contains("k-batch") && err.contains("different"),
        "{err}"
    );
    assert!(results[2]["seq"].is_u64(), "{results:?}");
    assert_eq!(
        results[3], results[0],
        "the repeat within the batch is a replay"
    );
    // Exactly one event each (see above: `take`, then silence, not a `sync` pong).
    let a = alice.take(1).await;
    alice.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(a[0]["type"], "agent_started", "{a:?}");
    let b = bob.take(1).await;
    bob.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(b[0]["type"], "custom_note");
}
