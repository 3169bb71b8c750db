//! A minimal server-sent events client over a raw TCP socket, for the `GET /sse` tests: it
//! sends one HTTP/1.1 request, decodes the chunked body and parses the event stream as the
//! WHATWG spec says (`field: value` lines, a blank line ends an event, `:` starts a comment).
//! Every read is bounded by [`WAIT`].

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{TestServer, WAIT};

/// One item of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// An event: its `id:` (if the event had one), `event:` (if any) and `data:` (lines
    /// joined with `\n`).
    Event {
        /// The `id:` field.
        id: Option<String>,
        /// The `event:` field.
        event: Option<String>,
        /// The `data:` lines, joined with `\n`.
        data: String,
    },
    /// A comment line (`: text`), without the colon and one leading space.
    Comment(String),
    /// A `retry:` field.
    Retry(u64),
    /// The response ended (or the connection was closed).
    End,
}

/// A refused request: status and JSON body.
pub type SseRefusal = (u16, Value);

/// An open event stream.
pub struct SseClient {
    stream: TcpStream,
    /// The response headers (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// Undecoded bytes of the chunked body.
    raw: Vec<u8>,
    /// Decoded body bytes not yet parsed into lines.
    text: Vec<u8>,
    ended: bool,
}

impl SseClient {
    /// `GET {path_and_query}` with `headers`; `Ok` on 200, else the status and JSON body.
    pub async fn open(
        server: &TestServer,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<SseClient, SseRefusal> {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let mut head = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
            server.addr
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("write head");
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("response head within the wait")
                .expect("read");
            assert!(n > 0, "connection closed before a response head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut client = SseClient {
            stream,
            headers,
            raw: buf[end + 4..].to_vec(),
            text: Vec::new(),
            ended: false,
        };
        if status == 200 {
            client.dechunk();
            return Ok(client);
        }
        let len: usize = client
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while client.raw.len() < len {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(WAIT, client.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => client.raw.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        let body =
            serde_json::from_slice(&client.raw[..len.min(client.raw.len())]).unwrap_or(Value::Null);
        Err((status, body))
    }

    /// The first value of response header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next item; panics when nothing arrives within [`WAIT`].
    pub async fn next(&mut self) -> SseItem {
        self.next_within(WAIT)
            .await
            .expect("no event-stream item within the wait")
    }

    /// The next item within `d`, or `None`.
    pub async fn next_within(&mut self, d: Duration) -> Option<SseItem> {
        let deadline = tokio::time::Instant::now() + d;
        let mut id = None;
        let mut event = None;
        let mut data: Option<String> = None;
        loop {
            while let Some(line) = self.line() {
                if line.is_empty() {
                    if let Some(data) = data.take() {
                        return Some(SseItem::Event { id, event, data });
                    }
                    id = None;
                    event = None;
                    continue;
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                    None => (line.clone(), String::new()),
                };
                match field.as_str() {
                    "" => return Some(SseItem::Comment(value)),
                    "id" => id = Some(value),
                    "event" => event = Some(value),
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(&value);
                        }
                        None => data = Some(value),
                    },
                    "retry" => return value.parse().ok().map(SseItem::Retry),
                    other => panic!("unknown event-stream field `{other}`"),
                }
            }
            if self.ended {
                return Some(SseItem::End);
            }
            let mut chunk = [0u8; 8192];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0,
            };
            if n == 0 {
                self.ended = true;
            }
            self.raw.extend_from_slice(&chunk[..n]);
            self.dechunk();
        }
    }

    /// The next event (comments and `retry:` skipped); panics on the end of the stream.
    pub async fn next_event(&mut self) -> (Option<String>, Option<String>, String) {
        loop {
            match self.next().await {
                SseItem::Event { id, event, data } => return (id, event, data),
                SseItem::End => panic!("the stream ended while waiting for an event"),
                _ => {}
            }
        }
    }

    /// The next event's data as JSON, with its `id:` and `event:`.
    pub async fn next_json(&mut self) -> (Option<String>, Option<String>, Value) {
        let (id, event, data) = self.next_event().await;
        let v = serde_json::from_str(&data).expect("data is JSON");
        (id, event, v)
    }

    /// Reads until `event: close` and returns its data; panics if the stream ends first.
    pub async fn closed(&mut self) -> Value {
        loop {
            let (_, event, v) = self.next_json().await;
            if event.as_deref() == Some("close") {
                return v;
            }
        }
    }

    /// Whether the response ends (after whatever is still to read) within `d`.
    pub async fn ends_within(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(SseItem::End) => return true,
                None => return false,
                Some(_) => {}
            }
        }
    }

    /// Reads and discards bytes until the server closes the connection (EOF or reset);
    /// `false` if it is still open after `d`.
    pub async fn discard_until_closed(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// One complete line of decoded text, without its line ending.
    fn line(&mut self) -> Option<String> {
        let i = self.text.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.text.drain(..=i).collect();
        Some(String::from_utf8_lossy(&line[..i]).into_owned())
    }

    /// Moves every complete chunk of `raw` into `text`; the terminal chunk ends the stream.
    fn dechunk(&mut self) {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_line = String::from_utf8_lossy(&self.raw[..eol]).into_owned();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            let start = eol + 2;
            self.text.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
    }
}
