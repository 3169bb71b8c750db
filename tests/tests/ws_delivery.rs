//! Delivery: every device of a user receives each event, after a welcome; other users
//! receive nothing even while many publish concurrently; channels and broadcasts.

use agentcast_tests::{TestServer, token, token_with};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_comes_first_with_its_fields() {
    let server = TestServer::start().await;
    let c = server
        .connect(&token_with("alice", json!({"tier": "mid"})))
        .await;
    let w = &c.welcome;
    assert_eq!(w["user_id"], "alice");
    assert_eq!(w["tier"], "mid");
    assert!(w["conn_id"].is_u64());
    assert!(w["last_seq"].is_u64());
    assert_eq!(w["heartbeat_ms"], 25_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_a_user_receives_each_event() {
    let server = TestServer::start().await;
    let t = token("alice");
    let mut devices = Vec::new();
    for _ in 0..3 {
        devices.push(server.connect(&t).await);
    }
    let (status, receipt) = server
        .publish(&json!({"user_id": "alice", "type": "agent_started", "run_id": "r1", "data": {"goal": "x", "n": [1, {"a": null}]}}))
        .await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["connections"], 3);
    let seq = receipt["seq"].as_u64().unwrap();
    for d in &mut devices {
        let e = d.next_json().await;
        assert_eq!(e["type"], "agent_started");
        assert_eq!(e["seq"], seq);
        assert_eq!(e["run_id"], "r1");
        assert_eq!(e["priority"], "critical");
        assert_eq!(e["data"], json!({"goal": "x", "n": [1, {"a": null}]}));
        assert!(e["ts"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_receive_nothing_while_many_publish_concurrently() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let users = 8;
    let per_user = 25;
    let mut clients = Vec::new();
    for u in 0..users {
        clients.push(server.connect(&token(&format!("user-{u}"))).await);
    }
    let mut publishers = Vec::new();
    for u in 0..users {
        let s = std::sync::Arc::clone(&server);
        publishers.push(tokio::spawn(async move {
            for i in 0..per_user {
                s.publish_user(
                    &format!("user-{u}"),
                    json!({"owner": format!("user-{u}"), "i": i}),
                )
                .await;
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    for (u, c) in clients.iter_mut().enumerate() {
        let mut last = 0;
        for i in 0..per_user {
            let e = c.next_json().await;
            assert_eq!(e["data"]["owner"], format!("user-{u}"), "leak: {e}");
            assert_eq!(e["data"]["i"], i);
            let seq = e["seq"].as_u64().unwrap();
            assert!(seq > last);
            last = seq;
        }
        assert!(c.sync().await.is_empty(), "extra events for user-{u}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_subscriptions_follow_the_channels_claim() {
    let server = TestServer::start().await;
    let mut c = server
        .connect(&token_with("bob", json!({"channels": ["job:*", "news"]})))
        .await;
    c.send_json(&json!({"type": "subscribe", "channel": "job:42"}))
        .await;
    c.send_json(&json!({"type": "subscribe", "channel": "secret"}))
        .await;
    let before = c.sync().await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["type"], "error");
    assert_eq!(before[0]["code"], "forbidden");
    let (s, r) = server
        .publish(&json!({"channel": "job:42", "type": "tool_completed", "run_id": "r", "data": {}}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["seq"], serde_json::Value::Null);
    assert_eq!(r["connections"], 1);
    let e = c.next_json().await;
    assert_eq!(e["channel"], "job:42");
    assert!(e.get("seq").is_none());
    c.send_json(&json!({"type": "unsubscribe", "channel": "job:42"}))
        .await;
    c.sync().await;
    let (_, r) = server
        .publish(&json!({"channel": "job:42", "type": "tool_completed", "run_id": "r"}))
        .await;
    assert_eq!(r["connections"], 0);
    c.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_connection() {
    let server = TestServer::start().await;
    let mut a = server.connect(&token("a")).await;
    let mut b = server.connect(&token("b")).await;
    let (s, r) = server
        .publish(&json!({"broadcast": true, "type": "maintenance", "data": {"in": 5}}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["connections"], 2);
    for c in [&mut a, &mut b] {
        let e = c.next_json().await;
        assert_eq!(e["type"], "maintenance");
        assert_eq!(e["channel"], "*");
    }
}
