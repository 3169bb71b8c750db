//! Before authentication a connection costs little: a request head over
//! `max_request_head_bytes` gets 431 and is closed, connections that have not finished a head
//! are bounded by `max_pending_connections` (the one waiting longest is closed) while a
//! prompt client still gets in, and 200 connections trickling 300 KiB heads do not grow the
//! process by much.

use std::time::Duration;

use agentcast_tests::{TestServer, WAIT, token};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server_stats(server: &TestServer) -> Value {
    let (_, body) = server.http("GET", "/api/v1/stats", None, b"").await;
    serde_json::from_str(&body).expect("stats JSON")
}

/// `GET /healthz` whose head carries one `X-Pad` header of `pad` bytes.
fn padded_head(pad: usize, finished: bool) -> Vec<u8> {
    let mut h = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: ".to_vec();
    h.resize(h.len() + pad, b'a');
    if finished {
        h.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    }
    h
}

/// Sends `head` and reads the answer up to the close.
async fn send_head(server: &TestServer, head: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let _ = s.write_all(head).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await;
    raw
}

/// Whether the server closed `s` within `limit` (EOF or reset) rather than leaving it open.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    // EOF, a reset, or an error answer before the close: anything but silence.
    tokio::time::timeout(limit, s.read(&mut buf)).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_the_limit_gets_431_and_one_under_it_is_served() {
    let server = TestServer::start().await;
    let raw = send_head(&server, &padded_head(64 * 1024, true)).await;
    let (status, _) = agentcast_tests::parse_response(&raw);
    assert_eq!(
        status,
        431,
        "{:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    // 12 KiB of headers is under the 16 KiB default.
    let raw = send_head(&server, &padded_head(12 * 1024, true)).await;
    assert_eq!(agentcast_tests::parse_response(&raw).0, 200);
    let stats = server_stats(&server).await;
    assert_eq!(stats["server"]["request_head_too_large"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_heads_beyond_the_cap_are_closed_while_a_prompt_client_connects() {
    const CAP: usize = 8;
    const EXTRA: usize = 4;
    let server = TestServer::start_with(|c| {
        c.limits.max_pending_connections = CAP;
        // Long enough that no slot frees itself by timing out during the test.
        c.limits.handshake_timeout_ms = 60_000;
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..CAP + EXTRA {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
            .await
            .expect("write");
        slow.push(s);
    }
    // The EXTRA oldest are closed, the CAP newest still wait.
    for (i, s) in slow.iter_mut().enumerate().take(EXTRA) {
        assert!(
            closed_within(s, WAIT).await,
            "unfinished head {i} still open"
        );
    }
    for (i, s) in slow.iter_mut().enumerate().skip(EXTRA) {
        assert!(
            !closed_within(s, Duration::from_millis(200)).await,
            "unfinished head {i} closed although within the cap"
        );
    }
    // A prompt client gets in: a WebSocket session and an HTTP request.
    let mut client = server.connect(&token("prompt")).await;
    assert!(client.sync().await.is_empty());
    let stats = server_stats(&server).await;
    let pending = stats["server"]["pending_heads"].as_u64().expect("gauge");
    let evicted = stats["server"]["pending_evicted"]
        .as_u64()
        .expect("counter");
    assert!(pending <= CAP as u64, "{stats}");
    assert!(evicted >= EXTRA as u64, "{stats}");
    let still_open = {
        let mut n = 0;
        for s in &mut slow {
            if !closed_within(s, Duration::from_millis(50)).await {
                n += 1;
            }
        }
        n
    };
    assert!(still_open <= CAP, "{still_open} unfinished heads open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_waiting_for_its_next_head_counts_as_pending() {
    let server = TestServer::start_with(|c| {
        c.limits.max_pending_connections = 2;
        c.limits.handshake_timeout_ms = 60_000;
    })
    .await;
    let mut keep = TcpStream::connect(server.addr).await.expect("connect");
    keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, keep.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    // Answered and kept alive: now it is pending again, and the oldest.
    keep.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .expect("write");
    let mut fresh = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
            .await
            .expect("write");
        fresh.push(s);
    }
    assert!(
        closed_within(&mut keep, WAIT).await,
        "keep-alive connection not evicted"
    );
    for s in &mut fresh {
        assert!(!closed_within(s, Duration::from_millis(200)).await);
    }
}

/// Process RSS in KiB (`VmRSS`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_unfinished_300_kib_heads_grow_memory_little() {
    const CONNS: usize = 200;
    const HEAD: usize = 300 * 1024;
    let server = TestServer::start().await;
    // Warm up the runtime and the server's pools.
    let _ = send_head(&server, &padded_head(1024, true)).await;
    let head = bytes_of(padded_head(HEAD, false));
    let before = rss_kib();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let head = std::sync::Arc::clone(&head);
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            // The server may answer 431 and close before the whole head is written.
            let _ = tokio::time::timeout(WAIT, s.write_all(&head)).await;
            s
        }));
    }
    let mut socks = Vec::new();
    for t in tasks {
        socks.push(t.await.expect("client task"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    let growth_mib = after.saturating_sub(before) as f64 / 1024.0;
    println!(
        "RSS before {before} KiB, after {CONNS} x {} KiB unfinished heads {after} KiB: +{growth_mib:.1} MiB",
        HEAD / 1024
    );
    // Before the head limit this grew by ~160 MiB (every head buffered whole).
    assert!(growth_mib < 40.0, "RSS grew by {growth_mib:.1} MiB");
    drop(socks);
}

fn bytes_of(v: Vec<u8>) -> std::sync::Arc<[u8]> {
    std::sync::Arc::from(v)
}
