//! Helpers of the binary's shutdown tests: a WebSocket client on a socket with a small
//! receive buffer that reads only when told to (so frames pile up in the server), and a
//! publisher of large events.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use agentcast_tests::{TestServer, token};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A WebSocket client that has done its handshake and read nothing since.
pub(crate) struct BlockedReader {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// What the reader found once it read everything.
#[derive(Debug, Default)]
pub(crate) struct ReadAll {
    /// `seq` of every complete event frame, in order.
    pub(crate) seqs: Vec<u64>,
    /// The close code, if a close frame arrived.
    pub(crate) close: Option<u16>,
}

impl BlockedReader {
    /// Connects to `addr` as `user` with a `recv_buffer`-byte socket receive buffer (set
    /// before connecting, so the kernel does not grow it) and completes the upgrade.
    pub(crate) async fn connect(addr: SocketAddr, user: &str, recv_buffer: u32) -> BlockedReader {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(recv_buffer).expect("SO_RCVBUF");
        let mut stream = socket.connect(addr).await.expect("connect");
        let request = format!(
            "GET /ws?token={} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            token(user)
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
                .await
                .expect("upgrade answer in time")
                .expect("read");
            assert!(n > 0, "closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        buf.drain(..head_end);
        BlockedReader { stream, buf }
    }

    /// Reads every frame until a close frame, the end of the stream, or `limit` without a
    /// byte. Text frames must be JSON; the welcome and other non-event messages are skipped.
    pub(crate) async fn read_all(mut self, limit: Duration) -> ReadAll {
        let mut out = ReadAll::default();
        loop {
            while let Some((opcode, payload)) = next_frame(&mut self.buf) {
                match opcode {
                    1 => {
                        let v: Value = serde_json::from_slice(&payload).expect("JSON text frame");
                        if let Some(seq) = v["seq"].as_u64() {
                            out.seqs.push(seq);
                        }
                    }
                    8 => {
                        out.close = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                        return out;
                    }
                    _ => {} // ping
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout(limit, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return out, // EOF, reset, or silence: a partial frame stays unread
            }
        }
    }
}

/// Takes one complete unmasked server frame off the front of `buf`.
fn next_frame(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?), 10),
        126 | 127 => return None,
        n => (u64::from(n), 2),
    };
    let end = header + usize::try_from(len).ok()?;
    if buf.len() < end {
        return None;
    }
    let payload = buf[header..end].to_vec();
    buf.drain(..end);
    Some((opcode, payload))
}

/// Publishes `n` events of about `bytes` bytes each to `user` and returns their seqs; every
/// receipt must count exactly one connection.
pub(crate) async fn publish_large(
    api: &TestServer,
    user: &str,
    n: usize,
    bytes: usize,
) -> Vec<u64> {
    let blob = "x".repeat(bytes);
    let mut seqs = Vec::with_capacity(n);
    for i in 0..n {
        let (status, receipt) = api
            .publish(&json!({
                "user_id": user, "type": "tool_executing", "run_id": "r",
                "data": {"i": i, "blob": blob},
            }))
            .await;
        assert_eq!(status, 200, "publish {i}: {receipt}");
        assert_eq!(receipt["connections"], 1, "publish {i}: {receipt}");
        seqs.push(receipt["seq"].as_u64().expect("seq"));
    }
    seqs
}

/// A TOML file in a fresh temporary directory (removed when the returned guard drops).
pub(crate) struct TomlFile {
    pub(crate) path: std::path::PathBuf,
}

impl TomlFile {
    pub(crate) fn new(name: &str, text: &str) -> TomlFile {
        let dir = std::env::temp_dir().join(format!("agentcast-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("agentcast.toml");
        std::fs::write(&path, text).expect("write config");
        TomlFile { path }
    }
}

impl Drop for TomlFile {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
