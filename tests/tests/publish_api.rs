//! The publish API: API-key auth, 400 naming the field, 413 over the body limit, batches
//! answered per item, and idempotency keys.

use std::time::Duration;

use agentcast_tests::{API_KEY, TestServer, token};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_api_key_is_401() {
    let server = TestServer::start().await;
    let body = json!({"user_id": "u", "type": "x"}).to_string();
    for key in [None, Some("wrong"), Some("")] {
        let (s, b) = server
            .http("POST", "/api/v1/publish", key, body.as_bytes())
            .await;
        assert_eq!(s, 401, "{key:?}: {b}");
        assert!(b.contains("API key"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_naming_the_field_and_change_nothing() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u")).await;
    for (body, field) in [
        ("{", "malformed JSON"),
        (r#"{"user_id":"u","run_id":"r"}"#, "`type`"),
        (r#"{"user_id":"u","type":"agent_started"}"#, "`run_id`"),
        (r#"{"user_id":5,"type":"x"}"#, "`user_id`"),
        (r#"{"type":"x"}"#, "target"),
    ] {
        let (s, b) = server
            .http("POST", "/api/v1/publish", Some(API_KEY), body.as_bytes())
            .await;
        assert_eq!(s, 400, "{body}: {b}");
        let err: Value = serde_json::from_str(&b).unwrap();
        assert!(err["error"].as_str().unwrap().contains(field), "{b}");
    }
    c.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413() {
    let server = TestServer::start_with(|c| c.limits.max_body_bytes = 1024).await;
    let body = json!({"user_id": "u", "type": "x", "data": {"pad": "x".repeat(2000)}}).to_string();
    let (s, b) = server
        .http("POST", "/api/v1/publish", Some(API_KEY), body.as_bytes())
        .await;
    assert_eq!(s, 413, "{b}");
    let (_, stats) = server.http("GET", "/api/v1/stats", None, b"").await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["server"]["publish_too_large"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_answered_per_item() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u")).await;
    let body = json!([
        {"user_id": "u", "type": "tool_executing", "run_id": "r", "data": {"i": 0}},
        {"type": "x"},
        {"user_id": "u", "type": "tool_completed", "run_id": "r", "data": {"i": 1}},
    ]);
    let (s, b) = server
        .http(
            "POST",
            "/api/v1/publish/batch",
            Some(API_KEY),
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let items: Vec<Value> = serde_json::from_str(&b).unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["connections"], 1);
    assert!(items[1]["error"].as_str().unwrap().contains("target"));
    assert!(items[2]["seq"].as_u64().unwrap() > items[0]["seq"].as_u64().unwrap());
    assert_eq!(c.next_json().await["data"]["i"], 0);
    assert_eq!(c.next_json().await["data"]["i"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_over_the_item_limit_is_413() {
    let server = TestServer::start_with(|c| c.limits.max_batch_items = 2).await;
    let item = json!({"user_id": "u", "type": "x"});
    let body = Value::Array(vec![item.clone(), item.clone(), item]).to_string();
    let (s, b) = server
        .http(
            "POST",
            "/api/v1/publish/batch",
            Some(API_KEY),
            body.as_bytes(),
        )
        .await;
    assert_eq!(s, 413, "{b}");
    let (s, _) = server
        .http("POST", "/api/v1/publish/batch", Some(API_KEY), b"{}")
        .await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_returns_the_first_receipt_and_delivers_once() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u")).await;
    let req =
        json!({"user_id": "u", "type": "agent_started", "run_id": "r", "idempotency_key": "k-1"});
    let (s1, r1) = server.publish(&req).await;
    let (s2, r2) = server.publish(&req).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(r1, r2);
    // Inside a batch too.
    let (_, b) = server
        .http(
            "POST",
            "/api/v1/publish/batch",
            Some(API_KEY),
            Value::Array(vec![req.clone(), req]).to_string().as_bytes(),
        )
        .await;
    let items: Vec<Value> = serde_json::from_str(&b).unwrap();
    assert_eq!(items, vec![r1.clone(), r1.clone()]);
    assert_eq!(c.next_json().await["seq"], r1["seq"]);
    assert!(c.sync().await.is_empty(), "delivered twice");
    let (_, stats) = server.http("GET", "/api/v1/stats", None, b"").await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["server"]["publish_idempotent_replays"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_an_offline_user_reports_zero_connections() {
    let server = TestServer::start().await;
    let (s, r) = server
        .publish(&json!({"user_id": "nobody", "type": "agent_completed", "run_id": "r"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["connections"], 0);
    assert!(r["seq"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_answer() {
    let server = TestServer::start().await;
    let (s, b) = server.http("GET", "/healthz", None, b"").await;
    assert_eq!((s, b.as_str()), (200, r#"{"status":"ok"}"#));
    let (s, _) = server.http("GET", "/readyz", None, b"").await;
    assert_eq!(s, 200);
    let (s, b) = server.http("GET", "/metrics", None, b"").await;
    assert_eq!(s, 200);
    assert!(b.contains("# TYPE agentcast_server_ws_open gauge"), "{b}");
    assert!(
        b.contains("agentcast_events_dropped_total{priority=\"critical\"} 0"),
        "{b}"
    );
    let (s, _) = server.http("GET", "/dashboard", None, b"").await;
    assert_eq!(s, 200);
    let (s, _) = server.http("GET", "/nope", None, b"").await;
    assert_eq!(s, 404);
    let (s, _) = server.http("GET", "/api/v1/publish", None, b"").await;
    assert_eq!(s, 405);
}
