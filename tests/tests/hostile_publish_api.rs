//! A hostile publisher: missing and mistyped fields (400 naming the field), bad keys (401),
//! bodies over the limit declared or streamed (413), chunked bodies that never end (408),
//! batches over the item limit (413) and with thousands of items (answered per item), channel
//! names with odd characters (400 or delivered exactly), and events for unknown users
//! (stored, delivered on their first connect). Refusals change nothing; the probe keeps
//! receiving.

mod hostile;

use std::time::Duration;

use agentcast_tests::{API_KEY, TestServer, token, token_with};
use hostile::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw request; returns status and body.
async fn raw_http(server: &TestServer, head_and_body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let _ = s.write_all(head_and_body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw)).await;
    agentcast_tests::parse_response(&raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_publishes_are_refused_precisely_and_change_nothing() {
    let server = TestServer::start_with(|c| {
        c.limits.max_body_bytes = 256 * 1024;
        c.limits.max_batch_items = 5000;
        c.limits.handshake_timeout_ms = 500;
    })
    .await;
    let mut probe = Probe::connect(&server, "publish").await;
    let ledger = Ledger::start("publish_api", &server, 1).await;
    let mut victim = server.connect(&token("victim")).await;
    let marker = server.publish_user("victim", json!({"n": 0})).await;
    assert_eq!(victim.next_json().await["seq"], marker);

    // 400, naming the field.
    let bad: Vec<(Value, &str)> = vec![
        (json!({"user_id": "victim", "run_id": "r"}), "`type`"),
        (
            json!({"user_id": "victim", "type": "agent_started"}),
            "`run_id`",
        ),
        (json!({"user_id": 5, "type": "custom_x"}), "`user_id`"),
        (json!({"user_id": null, "type": "custom_x"}), "`user_id`"),
        (
            json!({"user_id": ["victim"], "type": "custom_x"}),
            "`user_id`",
        ),
        (json!({"user_id": "", "type": "custom_x"}), "`user_id`"),
        (
            json!({"user_id": "x".repeat(300), "type": "custom_x"}),
            "`user_id`",
        ),
        (json!({"user_id": "victim", "type": 7}), "`type`"),
        (json!({"user_id": "victim", "type": ""}), "`type`"),
        (json!({"user_id": "victim", "type": "welcome"}), "`type`"),
        (json!({"user_id": "victim", "type": "gap"}), "`type`"),
        (json!({"user_id": "victim", "type": "bad type!"}), "`type`"),
        (
            json!({"user_id": "victim", "type": "agent_started", "run_id": 5}),
            "`run_id`",
        ),
        (
            json!({"user_id": "victim", "type": "custom_x", "priority": "urgent"}),
            "`priority`",
        ),
        (
            json!({"user_id": "victim", "type": "custom_x", "priority": 1}),
            "`priority`",
        ),
        (
            json!({"user_id": "victim", "type": "custom_x", "idempotency_key": ""}),
            "`idempotency_key`",
        ),
        (
            json!({"user_id": "victim", "type": "custom_x", "idempotency_key": "k".repeat(200)}),
            "`idempotency_key`",
        ),
        (json!({"type": "custom_x"}), "target"),
        (
            json!({"user_id": "victim", "channel": "c", "type": "custom_x"}),
            "target",
        ),
        (
            json!({"user_id": "victim", "broadcast": true, "type": "custom_x"}),
            "target",
        ),
        (json!({"broadcast": false, "type": "custom_x"}), "target"),
        (
            json!({"broadcast": "yes", "type": "custom_x"}),
            "`broadcast`",
        ),
        (json!({"channel": 42, "type": "custom_x"}), "`channel`"),
    ];
    for (body, field) in &bad {
        let (status, resp) = server.publish(body).await;
        assert_eq!(status, 400, "{body}: {resp}");
        let e = resp["error"].as_str().unwrap_or_default();
        assert!(e.contains(field), "{body}: `{e}` does not name {field}");
        ledger.case();
    }
    probe.check(&server, "missing and mistyped fields").await;

    // Odd channel names: refused with 400 naming `channel`, or (when allowed) delivered to
    // exactly the subscriber of that name.
    let odd_refused = [
        "",
        "job 42",
        "job\n42",
        "job\u{0}42",
        "jöb",
        "a*",
        "a?b",
        "<script>",
        "job%2042",
        "\u{202e}job",
    ];
    for ch in odd_refused {
        let long = "c".repeat(129);
        for name in [ch, long.as_str()] {
            let (status, resp) = server
                .publish(&json!({"channel": name, "type": "custom_x"}))
                .await;
            assert_eq!(status, 400, "{name:?}: {resp}");
            assert!(resp["error"].as_str().unwrap().contains("`channel`"));
            ledger.case();
        }
    }
    let odd_ok = [
        "a/b@c.d-e_f:g",
        "../../etc/passwd",
        "job:42",
        "A-Z_0.9",
        &"c".repeat(128),
    ];
    let mut sub = server
        .connect(&token_with("subscriber", json!({"channels": ["*"]})))
        .await;
    for ch in odd_ok {
        sub.send_json(&json!({"type": "subscribe", "channel": ch}))
            .await;
    }
    assert!(sub.sync().await.is_empty());
    for ch in odd_ok {
        let (status, resp) = server
            .publish(&json!({"channel": ch, "type": "custom_x", "data": {"ch": ch}}))
            .await;
        assert_eq!(status, 200, "{resp}");
        assert_eq!(resp["connections"], 1, "{ch}");
        let v = sub.next_json().await;
        assert_eq!(v["channel"], ch);
        assert_eq!(v["data"]["ch"], ch);
        ledger.case();
    }
    probe.check(&server, "odd channel names").await;

    // Bad API keys: 401, nothing published.
    let body = json!({"user_id": "victim", "type": "custom_x"}).to_string();
    for key in [
        None,
        Some(""),
        Some("wrong"),
        Some("test-api-ke"),
        Some("test-api-key2"),
        Some("TEST-API-KEY"),
    ] {
        let (status, _) = server
            .http("POST", "/api/v1/publish", key, body.as_bytes())
            .await;
        assert_eq!(status, 401, "{key:?}");
        ledger.case();
    }
    let (status, _) = raw_http(
        &server,
        format!(
            "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {API_KEY}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 401);
    ledger.case();

    // Over the limit: declared (refused before reading), streamed chunked without a length,
    // and a batch over the item limit.
    let big =
        json!({"user_id": "victim", "type": "custom_x", "data": {"pad": "x".repeat(300 * 1024)}})
            .to_string();
    let (status, resp) = server
        .http("POST", "/api/v1/publish", Some(API_KEY), big.as_bytes())
        .await;
    assert_eq!(status, 413, "{resp}");
    let mut chunked = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for piece in big.as_bytes().chunks(8192) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, resp) = raw_http(&server, &chunked).await;
    assert_eq!(status, 413, "{resp}");
    // A declared length that never arrives: 408 after the handshake timeout.
    let (status, resp) = raw_http(
        &server,
        format!(
            "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
             Content-Length: 1000\r\n\r\n{{\"user_id\":"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 408, "{resp}");
    let too_many: Vec<Value> = (0..5001)
        .map(|i| json!({"user_id": "victim", "type": "custom_x", "data": {"i": i}}))
        .collect();
    let (status, resp) = server
        .http(
            "POST",
            "/api/v1/publish/batch",
            Some(API_KEY),
            Value::Array(too_many).to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 413, "{resp}");
    ledger.cases(4);
    probe.check(&server, "over-limit bodies").await;

    // Nothing reached the victim from any refusal: the next event is the next seq.
    let next = server.publish_user("victim", json!({"n": 1})).await;
    assert_eq!(next, marker + 1, "a refused publish was published");
    let v = victim.next_json().await;
    assert_eq!(
        (v["seq"].as_u64(), v["data"]["n"].as_u64()),
        (Some(next), Some(1))
    );

    // A batch with 4,000 items, every tenth bad: answered per item, in order; the good ones
    // delivered in order.
    let items: Vec<Value> = (0..4000)
        .map(|i| {
            if i % 10 == 9 {
                json!({"user_id": "victim", "data": {"i": i}})
            } else {
                json!({"user_id": "victim", "type": "custom_x", "data": {"i": i}})
            }
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
    assert_eq!(status, 200);
    let results: Vec<Value> = serde_json::from_str(&resp).unwrap();
    assert_eq!(results.len(), 4000);
    let mut expect_seq = next;
    for (i, r) in results.iter().enumerate() {
        if i % 10 == 9 {
            assert!(r["error"].as_str().unwrap().contains("`type`"), "{r}");
        } else {
            expect_seq += 1;
            assert_eq!(r["seq"], expect_seq, "item {i}: {r}");
        }
    }
    ledger.case();
    // The victim gets them in order, up to what its bounded ring holds: a burst of 3,600
    // normal events overflows the ring (256 + 32 in flight), and the overflow policy drops
    // incoming normal events, every one of them counted.
    let mut last = 0;
    let mut got = 0u64;
    while let Ok(agentcast_tests::Incoming::Json(v)) =
        tokio::time::timeout(Duration::from_millis(300), victim.next()).await
    {
        let seq = v["seq"].as_u64().unwrap();
        assert!(seq > last, "out of order");
        assert_ne!(v["data"]["i"].as_u64().unwrap() % 10, 9);
        last = seq;
        got += 1;
    }
    let dropped = stats(&server).await["engine"]["dropped"]["normal"]
        .as_u64()
        .unwrap();
    println!("batch of 4,000: 3,600 accepted, {got} delivered live, {dropped} dropped (counted)");
    assert_eq!(
        got + dropped,
        3600,
        "an event was lost without being counted"
    );
    probe.check(&server, "batch of 4,000").await;

    // Unknown users: events are stored and delivered on the first connect, in order.
    for i in 0..3 {
        let (status, resp) = server
            .publish(&json!({"user_id": "not-yet-seen", "type": "agent_started", "run_id": "r", "data": {"i": i}}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(resp["connections"], 0);
    }
    let mut late = server.connect(&token("not-yet-seen")).await;
    for i in 0..3 {
        assert_eq!(late.next_json().await["data"]["i"], i);
    }
    ledger.case();
    probe.check(&server, "unknown users").await;

    drop((victim, sub, late));
    // Users given state after the baseline: `victim`, `subscriber` and `not-yet-seen`.
    ledger.finish(&server, &probe, 64 * 1024, 3).await;
}
