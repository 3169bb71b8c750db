//! A raw HTTP/1.1 client of `POST /api/v1/publish/stream`: a chunked request body written
//! piece by piece while the chunked NDJSON response is read line by line, on one socket.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::WAIT;

/// The writing half: the request body, one HTTP chunk per [`StreamWriter::chunk`].
pub struct StreamWriter {
    w: OwnedWriteHalf,
}

/// The reading half: the response status, then its NDJSON lines.
pub struct StreamReader {
    r: OwnedReadHalf,
    /// Bytes read and not yet decoded.
    raw: Vec<u8>,
    /// Decoded body bytes not yet split into lines.
    body: Vec<u8>,
    /// The response's status (0 until the head is read).
    status: u16,
    /// Whether the last chunk (`0\r\n\r\n`) was read.
    pub ended: bool,
}

/// Opens a stream with `Authorization: Bearer {key}` (none when `None`) on `path_query`
/// (`/api/v1/publish/stream?...`), sending `first` as the first chunk (may be empty). The
/// response head is read when first asked for (the server sends it once the body's first
/// chunk arrives).
pub async fn open_stream(
    addr: SocketAddr,
    key: Option<&str>,
    path_query: &str,
    first: &[u8],
) -> (StreamWriter, StreamReader) {
    open_stream_on(
        TcpStream::connect(addr).await.expect("connect"),
        key,
        path_query,
        first,
    )
    .await
}

/// [`open_stream`] on a socket the caller connected (for example with a small receive
/// buffer).
pub async fn open_stream_on(
    s: TcpStream,
    key: Option<&str>,
    path_query: &str,
    first: &[u8],
) -> (StreamWriter, StreamReader) {
    let (r, w) = s.into_split();
    let mut writer = StreamWriter { w };
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let head = format!(
        "POST {path_query} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    writer
        .w
        .write_all(head.as_bytes())
        .await
        .expect("write head");
    if !first.is_empty() {
        writer.chunk(first).await;
    }
    let reader = StreamReader {
        r,
        raw: Vec::new(),
        body: Vec::new(),
        status: 0,
        ended: false,
    };
    (writer, reader)
}

impl StreamWriter {
    /// Writes `bytes` as one HTTP chunk.
    pub async fn chunk(&mut self, bytes: &[u8]) {
        self.try_chunk(bytes).await.expect("write chunk");
    }

    /// Writes `bytes` as one HTTP chunk; an error when the server closed.
    pub async fn try_chunk(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut c = format!("{:x}\r\n", bytes.len()).into_bytes();
        c.extend_from_slice(bytes);
        c.extend_from_slice(b"\r\n");
        self.w.write_all(&c).await
    }

    /// Ends the request body.
    pub async fn finish(&mut self) {
        let _ = self.w.write_all(b"0\r\n\r\n").await;
    }
}

impl StreamReader {
    /// The response's status (reads the head if needed).
    pub async fn status(&mut self) -> u16 {
        if self.status == 0 {
            self.read_head().await;
        }
        self.status
    }

    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        match tokio::time::timeout(WAIT, self.r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Err(_) => panic!("no response bytes within {WAIT:?}"),
        }
    }

    async fn read_head(&mut self) {
        loop {
            if let Some(i) = find(&self.raw, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.raw[..i]).into_owned();
                self.status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let chunked = head
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked");
                self.raw.drain(..i + 4);
                if !chunked {
                    // A whole refusal: keep its body as is.
                    while self.fill().await {}
                    self.body = std::mem::take(&mut self.raw);
                    self.ended = true;
                }
                return;
            }
            assert!(
                self.fill().await,
                "connection closed before the response head"
            );
        }
    }

    /// Decodes the chunks in `raw`.
    fn decode(&mut self) {
        while !self.ended {
            let Some(i) = find(&self.raw, b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..i])
                .ok()
                .and_then(|s| {
                    usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok()
                })
                .expect("chunk size");
            if size == 0 {
                self.ended = true;
                return;
            }
            if self.raw.len() < i + 2 + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[i + 2..i + 2 + size]);
            self.raw.drain(..i + 2 + size + 2);
        }
    }

    /// The whole body of a refusal (not chunked), as text; call after
    /// [`StreamReader::status`].
    pub fn refusal_body(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The next response line as JSON; `None` when the response ended first. Panics after
    /// [`WAIT`] without one.
    pub async fn line(&mut self) -> Option<Value> {
        if self.status().await != 200 {
            return None;
        }
        loop {
            self.decode();
            if let Some(i) = self.body.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON line"));
            }
            if self.ended || !self.fill().await {
                return None;
            }
        }
    }

    /// The next line, which must exist.
    pub async fn expect_line(&mut self) -> Value {
        self.line().await.expect("a response line, got the end")
    }

    /// Whether a line arrives within `d` (`false`: nothing yet). Reads at most one line.
    pub async fn line_within(&mut self, d: Duration) -> Option<Value> {
        tokio::time::timeout(d, self.line()).await.ok().flatten()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
