//! The tokens scenario's publishers: one streaming publish connection (or one keep-alive
//! connection of per-event requests) per `--publishers`, each carrying a share of the runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;

use super::super::client::unix_nanos;
use super::{Shared, event};

/// One publishing connection and the runs it carries.
pub(super) struct Publisher {
    pub(super) addr: SocketAddr,
    pub(super) host: String,
    pub(super) api_key: String,
    pub(super) run_tag: u32,
    pub(super) owned: Vec<usize>,
    pub(super) per_run: u64,
    pub(super) period: Duration,
    pub(super) start: Instant,
    pub(super) shared: Arc<Shared>,
}

impl Publisher {
    /// The events of step `i` (0: started, 1..=per_run: token i-1, per_run+1: completed),
    /// one per owned run, stamping the tokens.
    fn step(&self, i: u64) -> Vec<Value> {
        let k = i.checked_sub(1);
        self.owned
            .iter()
            .map(|&r| {
                if let Some(a) = k.and_then(|k| self.shared.sent_at[r].get(k as usize)) {
                    a.store(unix_nanos(), Ordering::Relaxed);
                }
                event(self.run_tag, r, k, self.per_run)
            })
            .collect()
    }

    /// When step `i` is due: tokens one period apart; started just before the first.
    fn due(&self, i: u64) -> Instant {
        self.start + self.period.mul_f64(i.saturating_sub(1) as f64)
    }

    /// Every step over one streaming publish connection.
    pub(super) async fn stream(&self) -> Result<(), String> {
        let s = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = s.set_nodelay(true);
        let (r, mut w) = s.into_split();
        let head = format!(
            "POST /api/v1/publish/stream HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n",
            self.host, self.api_key
        );
        w.write_all(head.as_bytes())
            .await
            .map_err(|e| format!("sending the head: {e}"))?;
        let shared = Arc::clone(&self.shared);
        let reader = tokio::spawn(read_receipts(r, shared));
        let mut chunk = Vec::with_capacity(4096);
        for i in 0..=self.per_run + 1 {
            tokio::time::sleep_until(self.due(i)).await;
            let mut body = Vec::with_capacity(128 * self.owned.len());
            for v in self.step(i) {
                let _ = serde_json::to_writer(&mut body, &v);
                body.push(b'\n');
            }
            chunk.clear();
            chunk.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            chunk.extend_from_slice(&body);
            chunk.extend_from_slice(b"\r\n");
            w.write_all(&chunk)
                .await
                .map_err(|e| format!("writing lines: {e}"))?;
        }
        w.write_all(b"0\r\n\r\n")
            .await
            .map_err(|e| format!("ending the body: {e}"))?;
        match reader.await {
            Ok(r) => r,
            Err(e) => Err(format!("receipt reader: {e}")),
        }
    }

    /// Every step as one `POST /api/v1/publish` per event over one keep-alive connection.
    pub(super) async fn requests(&self) -> Result<(), String> {
        let mut conn = None;
        let mut resp = Vec::with_capacity(512);
        let mut req = Vec::with_capacity(512);
        for i in 0..=self.per_run + 1 {
            tokio::time::sleep_until(self.due(i)).await;
            for v in self.step(i) {
                let body = v.to_string();
                req.clear();
                req.extend_from_slice(
                    format!(
                        "POST /api/v1/publish HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        self.host,
                        self.api_key,
                        body.len()
                    )
                    .as_bytes(),
                );
                req.extend_from_slice(body.as_bytes());
                match super::super::publisher::send(&mut conn, self.addr, &req, &mut resp).await {
                    Ok((200, _)) => {
                        self.shared.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((s, _)) => self
                        .shared
                        .error(format!("HTTP {s}: {}", String::from_utf8_lossy(&resp))),
                    Err(e) => {
                        conn = None;
                        self.shared.error(e);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads a stream's chunked NDJSON receipts to the final line: counts ok receipts of deltas
/// (every line but a run's first and last is a delta) and errors.
async fn read_receipts(mut r: OwnedReadHalf, shared: Arc<Shared>) -> Result<(), String> {
    let mut raw = Vec::with_capacity(16 * 1024);
    let mut body = Vec::with_capacity(16 * 1024);
    let mut head_done = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading receipts: {e}"))?;
        if n == 0 {
            return Err("the server closed the stream before its final line".into());
        }
        raw.extend_from_slice(&buf[..n]);
        if !head_done {
            let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&raw[..i]).into_owned();
            if !head.starts_with("HTTP/1.1 200") {
                return Err(format!(
                    "stream refused: {}",
                    head.lines().next().unwrap_or("")
                ));
            }
            raw.drain(..i + 4);
            head_done = true;
        }
        // Chunks.
        while let Some(i) = raw.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&raw[..i])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or("bad chunk size in the receipts")?;
            if raw.len() < i + 2 + size + 2 {
                break;
            }
            body.extend_from_slice(&raw[i + 2..i + 2 + size]);
            raw.drain(..i + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
        while let Some(i) = body.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = body.drain(..=i).collect();
            let v: Value = serde_json::from_slice(&line).map_err(|e| format!("receipt: {e}"))?;
            if let Some(e) = v.get("error") {
                shared.error(format!("line {}: {e}", v["line"]));
            } else if v.get("end").is_some() {
                return Ok(());
            } else if v.get("line").is_some() {
                shared.accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
