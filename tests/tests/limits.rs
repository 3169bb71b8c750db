//! Limits that protect the node: bad and oversize client messages (error, connection stays
//! usable), sustained abuse and the inbound rate limit (1008), node and per-user connection
//! limits (503, 429), subscriptions per tier, the handshake timeout (slowloris), the idle
//! timeout, and WebSocket protocol violations (1002).

use std::time::{Duration, Instant};

use agentcast_tests::{Incoming, TestServer, WAIT, token, token_with};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_an_error_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u")).await;
    let cases = [
        ("hello".to_owned(), "invalid_json"),
        (r#"{"type":"nope"}"#.to_owned(), "unknown_type"),
        (r#"{"type":"ack","seq":"7"}"#.to_owned(), "invalid_field"),
        (r#"{"type":"subscribe"}"#.to_owned(), "invalid_field"),
        (
            format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(5000)),
            "too_large",
        ),
    ];
    for (msg, code) in &cases {
        c.send_text(msg).await;
        let e = c.next_json().await;
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["code"], *code, "{e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(c.sync().await.is_empty());
    let seq = server.publish_user("u", json!({})).await;
    assert_eq!(c.next_json().await["seq"], seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_abuse_closes_with_1008() {
    let server = TestServer::start_with(|c| c.limits.abuse_max_errors = 5).await;
    let mut c = server.connect(&token("u")).await;
    for _ in 0..5 {
        c.send_text("not json").await;
    }
    let mut errors = 0;
    loop {
        match c.next().await {
            Incoming::Json(v) => {
                assert_eq!(v["type"], "error");
                errors += 1;
            }
            Incoming::Closed(code) => {
                assert_eq!(code, Some(1008));
                break;
            }
        }
    }
    assert_eq!(errors, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_rate_limit_answers_rate_limited_then_1008() {
    let server = TestServer::start_with(|c| {
        c.limits.rate_per_sec = 1.0;
        c.limits.rate_burst = 3.0;
        c.limits.abuse_max_errors = 5;
    })
    .await;
    let mut c = server.connect(&token("u")).await;
    for _ in 0..20 {
        c.send_json(&json!({"type": "ping"})).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    let code = loop {
        match c.next().await {
            Incoming::Json(v) if v["type"] == "pong" => pongs += 1,
            Incoming::Json(v) => {
                assert_eq!(v["code"], "rate_limited", "{v}");
                limited += 1;
            }
            Incoming::Closed(code) => break code,
        }
    };
    assert_eq!((pongs, limited, code), (3, 5, Some(1008)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_connection_limit_is_503_before_the_upgrade() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 2).await;
    let a = server.connect(&token("a")).await;
    let _b = server.connect(&token("b")).await;
    let (status, body) = server.refused(&format!("token={}", token("c"))).await;
    assert_eq!(status, 503, "{body}");
    a.close().await;
    let deadline = Instant::now() + WAIT;
    while server
        .connect_query(&format!("token={}", token("c")))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_connection_limit_of_the_tier_is_429() {
    let server = TestServer::start_with(|c| {
        c.tiers.free.connections_per_user = 2;
        c.tiers.enterprise.connections_per_user = 3;
    })
    .await;
    let t = token("u");
    let _a = server.connect(&t).await;
    let _b = server.connect(&t).await;
    let (status, body) = server.refused(&format!("token={t}")).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("tier free"));
    // Another user, and a higher tier, are not affected.
    server.connect(&token("v")).await;
    let e = token_with("w", json!({"tier": "enterprise"}));
    let _c = [
        server.connect(&e).await,
        server.connect(&e).await,
        server.connect(&e).await,
    ];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_follow_the_tier() {
    let server = TestServer::start_with(|c| c.tiers.free.subscriptions_per_connection = 1).await;
    let mut c = server
        .connect(&token_with("u", json!({"channels": ["*"]})))
        .await;
    c.send_json(&json!({"type": "subscribe", "channel": "a"}))
        .await;
    c.send_json(&json!({"type": "subscribe", "channel": "b"}))
        .await;
    let replies = c.sync().await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["code"], "subscription_limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_is_dropped() {
    let server = TestServer::start_with(|c| c.limits.handshake_timeout_ms = 200).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection not dropped");
    assert!(start.elapsed() < Duration::from_secs(2));
    let (_, stats) = server.http("GET", "/api/v1/stats", None, b"").await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["server"]["handshake_timeouts"], 1);
}

/// Opens a WebSocket by hand (so the test controls every byte) and skips the response head.
async fn raw_ws(server: &TestServer, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "accept key: {head}"
    );
    s
}

/// Reads one unmasked server frame: (opcode, payload).
async fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    tokio::time::timeout(WAIT, s.read_exact(&mut h))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await.unwrap();
    (h[0] & 0x0f, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmasked_client_frame_closes_with_1002() {
    let server = TestServer::start().await;
    let mut s = raw_ws(&server, &token("u")).await;
    let (op, welcome) = read_frame(&mut s).await;
    assert_eq!(op, 1);
    assert!(String::from_utf8(welcome).unwrap().contains("welcome"));
    s.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let (op, payload) = read_frame(&mut s).await;
    assert_eq!(op, 8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_pinged_then_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(|c| {
        c.heartbeat_ms = 100;
        c.idle_timeout_ms = 300;
    })
    .await;
    let mut s = raw_ws(&server, &token("u")).await;
    let start = Instant::now();
    let mut pings = 0;
    let close = loop {
        let (op, p) = read_frame(&mut s).await;
        match op {
            9 => pings += 1,
            8 => break u16::from_be_bytes([p[0], p[1]]),
            _ => {}
        }
    };
    assert!(pings >= 2, "pings: {pings}");
    assert_eq!(close, 1001);
    assert!(start.elapsed() >= Duration::from_millis(300));
}
