//! Harness of the end-to-end tests: a real agentcast server started in-process with
//! [`agentcast_server::run`] on `127.0.0.1:0`, real WebSocket clients (tokio-tungstenite) and
//! real HTTP over TCP.
//!
//! Every wait is bounded ([`WAIT`]) so a broken server fails a test instead of hanging it.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentcast_server::{Config, ServerError};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod binary;
mod redis;
pub mod schema;
mod scripts;
mod sse;
mod stream;
mod webhook;
mod wedge;
pub use binary::{BinaryServer, strip_ansi};
pub use redis::{RedisServer, cluster_node};
pub use scripts::{PyClient, run_node_file, run_node_script, run_node_script_with};
pub use sse::{SseClient, SseItem, SseRefusal};
pub use stream::{StreamReader, StreamWriter, open_stream, open_stream_on};
pub use webhook::webhook_receiver;
pub use wedge::WedgeProxy;

/// The HS256 secret of test servers.
pub const SECRET: &str = "test-secret-0123456789-of-32-bytes-or-more";
/// The publish API key of test servers.
pub const API_KEY: &str = "test-api-key";
/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// A server running in this process.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// A handle to a server running elsewhere (for example a [`BinaryServer`] process) at
    /// `addr`: every client helper works; [`TestServer::shutdown`] does not apply.
    pub fn remote(addr: SocketAddr) -> TestServer {
        TestServer {
            addr,
            stop: None,
            task: None,
        }
    }

    /// A server with the test secret and key and 2 shards.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A server whose configuration `tweak` adjusts first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = Config::default();
        cfg.jwt_secret = Some(SECRET.into());
        cfg.api_key = Some(API_KEY.into());
        cfg.shards = Some(2);
        cfg.shutdown_grace_ms = 2000;
        tweak(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(agentcast_server::run(listener, cfg, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Triggers a graceful shutdown and waits for `run` to return.
    pub async fn shutdown(&mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().expect("server already shut down");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("run did not return after shutdown")
            .expect("server task panicked")
    }

    /// `ws://addr/ws?{query}`.
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws?{query}", self.addr)
    }

    /// Connects with `?token=` and reads the welcome.
    pub async fn connect(&self, token: &str) -> Client {
        self.connect_query(&format!("token={token}"))
            .await
            .unwrap_or_else(|e| panic!("connect failed: {e:?}"))
    }

    /// Connects with a raw query string; on success reads the welcome.
    pub async fn connect_query(&self, query: &str) -> Result<Client, tungstenite::Error> {
        let (ws, _) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(self.ws_url(query)))
                .await
                .expect("connect timed out")?;
        let mut c = Client {
            ws,
            welcome: Value::Null,
        };
        let w = c.next_json().await;
        assert_eq!(w["type"], "welcome", "first message must be welcome: {w}");
        c.welcome = w;
        Ok(c)
    }

    /// Tries to connect with a query and returns the HTTP status and body of the refusal.
    pub async fn refused(&self, query: &str) -> (u16, Value) {
        match self.connect_query(query).await {
            Ok(_) => panic!("connection with `{query}` was accepted"),
            Err(tungstenite::Error::Http(resp)) => {
                let body = resp.body().clone().unwrap_or_default();
                let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                (resp.status().as_u16(), v)
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }

    /// `POST /api/v1/publish` with the API key.
    pub async fn publish(&self, body: &Value) -> (u16, Value) {
        let (s, b) = self
            .http(
                "POST",
                "/api/v1/publish",
                Some(API_KEY),
                body.to_string().as_bytes(),
            )
            .await;
        (s, serde_json::from_str(&b).unwrap_or(Value::Null))
    }

    /// `POST /api/v1/publish/batch` with `items`; asserts 200 and returns the per-item
    /// results (`{"seq", "connections"}` or `{"error"}`).
    pub async fn publish_batch(&self, items: &[Value]) -> Vec<Value> {
        let body = Value::Array(items.to_vec()).to_string();
        let (status, text) = self
            .http(
                "POST",
                "/api/v1/publish/batch",
                Some(API_KEY),
                body.as_bytes(),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).expect("batch answer is a JSON array")
    }

    /// Publishes `{"user_id", "type": "tool_executing", "run_id": "r", "data": data}` and
    /// returns the seq.
    pub async fn publish_user(&self, user: &str, data: Value) -> u64 {
        let (s, v) = self
            .publish(
                &json!({"user_id": user, "type": "tool_executing", "run_id": "r", "data": data}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["seq"].as_u64().expect("seq")
    }

    /// One HTTP/1.1 request (`Connection: close`); returns status and body.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &[u8],
    ) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let auth = bearer.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.expect("write head");
        // A refused request may be answered before the body is read: ignore write errors.
        let _ = s.write_all(body).await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await;
        parse_response(&raw)
    }
}

impl TestServer {
    /// One HTTP/1.1 request (`Connection: close`) with extra `headers`; returns status and
    /// body. Unlike [`TestServer::http`] (which sends `Host: test`), the `Host` is the server's
    /// address, as a real client sends it, unless `headers` carries its own `Host`.
    pub async fn http_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        s.write_all(head.as_bytes()).await.expect("write head");
        // A refused request may be answered before the body is read: ignore write errors.
        let _ = s.write_all(body).await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await;
        parse_response(&raw)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Splits a raw HTTP/1.1 response into status and body.
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// A signed HS256 token with `claims` (add `exp` yourself, or use [`token`]).
pub fn sign_hs256(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A valid token for `user` (free tier, one hour).
pub fn token(user: &str) -> String {
    sign_hs256(&json!({"sub": user, "exp": now() + 3600}), SECRET)
}

/// A valid token for `user` with extra claims merged in.
pub fn token_with(user: &str, extra: Value) -> String {
    let mut claims = json!({"sub": user, "exp": now() + 3600});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    sign_hs256(&claims, SECRET)
}

/// A connected WebSocket client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The welcome message.
    pub welcome: Value,
}

/// What a client read next.
#[derive(Debug)]
pub enum Incoming {
    /// A JSON text message.
    Json(Value),
    /// A close frame (code), or the end of the stream (`None`).
    Closed(Option<u16>),
}

impl Client {
    /// The next message or close, skipping WebSocket pings and pongs. Panics after [`WAIT`].
    pub async fn next(&mut self) -> Incoming {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no message within the wait");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Incoming::Json(serde_json::from_str(&t).expect("server sent JSON"));
                }
                Some(Ok(Message::Close(f))) => {
                    return Incoming::Closed(f.map(|f: CloseFrame| u16::from(f.code)));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
                Some(Err(_)) | None => return Incoming::Closed(None),
            }
        }
    }

    /// The next JSON message; panics on a close.
    pub async fn next_json(&mut self) -> Value {
        match self.next().await {
            Incoming::Json(v) => v,
            Incoming::Closed(c) => panic!("closed ({c:?}) while waiting for a message"),
        }
    }

    /// Waits for a close and returns its code (skipping messages before it).
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Incoming::Closed(c) = self.next().await {
                return c;
            }
        }
    }

    /// Sends a JSON message.
    pub async fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s)).await.expect("send");
    }

    /// Sends `{"type":"ping"}` and returns every message received before the `pong`. Since
    /// the server handles a connection's messages in order, everything sent before is in force,
    /// and the session drains the connection's hand-off queue before it writes the pong, so
    /// every event handed to the connection before is in the list (events still in its
    /// backlog ring, behind a slow socket, may come after).
    pub async fn sync(&mut self) -> Vec<Value> {
        self.send_json(&json!({"type": "ping"})).await;
        let mut before = Vec::new();
        loop {
            let v = self.next_json().await;
            if v["type"] == "pong" {
                return before;
            }
            before.push(v);
        }
    }

    /// Reads exactly `n` JSON messages. Use it for what the engine queues at connect (a
    /// resume's `gap` and replay): [`Client::sync`]'s pong is written by the session itself
    /// and can overtake those frames.
    pub async fn take(&mut self, n: usize) -> Vec<Value> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            got.push(self.next_json().await);
        }
        got
    }

    /// The next JSON message if one arrives within `d` (pings skipped); panics on a close.
    pub async fn try_next(&mut self, d: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(&t).expect("server sent JSON"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("connection ended while reading: {other:?}"),
            }
        }
    }

    /// Asserts that nothing but pings arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(d, self.ws.next()).await {
            assert!(
                matches!(m, Message::Ping(_) | Message::Pong(_)),
                "expected silence, got {m:?}"
            );
        }
    }

    /// Sends a close and waits for the server's answer.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }
}
