//! A client frame header announcing more than 64 × `max_message_bytes` closes the connection
//! with 1009 at once, before any payload; a message modestly over the limit still gets an
//! `error` (`too_large`), its payload is skipped, and the connection keeps working.

use std::time::{Duration, Instant};

use agentcast_server::ws::codec::encode_client_frame;
use agentcast_tests::{TestServer, WAIT, token};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A raw TCP connection after a completed upgrade and the welcome.
async fn upgraded(server: &TestServer, user: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let req = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        token(user)
    );
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(WAIT, s.read_exact(&mut b))
            .await
            .expect("head in time")
            .expect("read head");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    let (op, welcome) = read_frame(&mut s).await.expect("welcome");
    assert_eq!(op, 1);
    assert_eq!(json_of(&welcome)["type"], "welcome");
    s
}

/// One server frame (opcode, payload), or `None` at EOF. Panics after [`WAIT`].
async fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(WAIT, async {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.ok()?;
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).await.ok()?;
                usize::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).await.ok()?;
                u64::from_be_bytes(b) as usize
            }
            n => usize::from(n),
        };
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).await.ok()?;
        Some((h[0] & 0x0f, p))
    })
    .await
    .expect("a frame or EOF within the wait")
}

/// The next text frame as JSON, skipping pings.
async fn next_json(s: &mut TcpStream) -> Value {
    loop {
        let (op, p) = read_frame(s).await.expect("a message, not EOF");
        match op {
            1 => return json_of(&p),
            9 => {}
            other => panic!("unexpected opcode {other} {p:?}"),
        }
    }
}

fn json_of(p: &[u8]) -> Value {
    serde_json::from_slice(p).expect("server text is JSON")
}

/// A masked text frame header announcing `len` payload bytes (64-bit length form).
fn header(len: u64) -> Vec<u8> {
    let mut h = vec![0x81, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&MASK);
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_header_announcing_2_pow_63_bytes_is_closed_with_1009_at_once() {
    let server = TestServer::start_with(|c| c.limits.max_message_bytes = 4096).await;
    for len in [(1u64 << 63) - 1, 16 << 20] {
        let mut s = upgraded(&server, "huge").await;
        // Only the header: no payload follows, and none is needed for the verdict.
        s.write_all(&header(len)).await.expect("write header");
        let started = Instant::now();
        let (op, p) = read_frame(&mut s).await.expect("a close frame");
        assert_eq!(op, 8, "expected a close for {len}, got opcode {op}: {p:?}");
        assert_eq!(u16::from_be_bytes([p[0], p[1]]), 1009, "{len}");
        assert!(started.elapsed() < WAIT);
        // The server then ends the connection: EOF, not a wait for the payload.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
            .await
            .expect("EOF after the close");
    }
    let (_, metrics) = server.http("GET", "/metrics", None, b"").await;
    assert!(
        metrics.contains("agentcast_server_frame_too_large_closes_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agentcast_forced_closes_total{reason=\"frame_too_large\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_modestly_over_the_limit_gets_an_error_and_the_connection_keeps_working() {
    let server = TestServer::start_with(|c| c.limits.max_message_bytes = 4096).await;
    let mut s = upgraded(&server, "modest").await;
    // 8 KiB, twice the limit and far under the ceiling (256 KiB): answered before the payload.
    s.write_all(&header(8192)).await.expect("write header");
    let e = next_json(&mut s).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["code"], "too_large", "{e}");
    // The payload streams through in small pieces and is skipped.
    for _ in 0..8 {
        s.write_all(&[b'x'; 1024]).await.expect("write payload");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The connection is usable: a ping is answered and events still arrive.
    let ping = encode_client_frame(true, 1, br#"{"type":"ping"}"#, MASK);
    s.write_all(&ping).await.expect("write ping");
    assert_eq!(next_json(&mut s).await, json!({"type": "pong"}));
    let seq = server
        .publish_user("modest", json!({"after": "oversize"}))
        .await;
    assert_eq!(next_json(&mut s).await["seq"], seq);
}
