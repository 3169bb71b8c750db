//! Shared by the `hostile_*` suites: a well-behaved probe client that must keep receiving its
//! events while hostile clients do their worst, raw-socket WebSocket helpers (so a test
//! controls every byte), a count of the hostile cases tried, and the memory accounting of the
//! server before and after.
//!
//! # How memory is measured
//!
//! Two figures, both printed by [`Ledger::finish`]:
//!
//! - **the server's own accounting** from `GET /api/v1/stats`: engine connections and queued
//!   frames (`queue_depth`) must return exactly to their baseline once the hostile clients are
//!   gone: this is what proves nothing leaks per connection. The `users` gauge (users with
//!   state) must grow by no more than the users the suite authenticated as or published to
//!   successfully: a refused token, frame, message or publish creates no user state. (Users
//!   that did connect keep their state for the engine's user TTL, 5 minutes, so the gauge
//!   cannot return to its baseline within a test.)
//! - **process RSS** (`VmRSS` of `/proc/self/status`). The server runs in the test process, so
//!   this includes the test's own clients and the allocator's caches; it must come back to
//!   within a tolerance of the baseline (the allocator keeps freed pages, so not exactly).
//!   Every suite's binary uses the allocator the `agentcast` binary ships, mimalloc (the
//!   `#[global_allocator]` below), so RSS reflects what the server would hold in production,
//!   not glibc malloc's arenas; [`Ledger::start`] sets mimalloc's purge delay to 0
//!   ([`purge_freed_memory_at_once`]) so a reading does not depend on when it is taken.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentcast_server::ws::codec::encode_client_frame;
use agentcast_tests::{TestServer, WAIT, token};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The allocator of the `agentcast` binary (`server/src/main.rs`), for every hostile suite.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The probe's events must arrive within this (the brief's "normal latency" bound).
pub const PROBE_DEADLINE: Duration = Duration::from_secs(1);

/// A fixed mask key for client frames built by hand.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_client_frame(fin, opcode, payload, MASK)
}

/// A masked text frame.
pub fn text(payload: &str) -> Vec<u8> {
    frame(true, 1, payload.as_bytes())
}

/// Makes mimalloc return freed memory to the kernel at once instead of after its purge
/// delay (v3 defaults: 1 s for pages, × 10 for arena memory, where 10 MiB documents live).
///
/// The `agentcast` binary releases the same memory, only up to ~10 s later; without this a
/// reading taken right after a round counts a varying number of freed 10 MiB documents
/// (measured: rounds of the json suite between 60 and 151 MiB with nothing leaked). With it,
/// RSS follows what mimalloc still holds (live memory plus its per-thread page caches).
pub fn purge_freed_memory_at_once() {
    /// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (`include/mimalloc.h`).
    const MI_OPTION_PURGE_DELAY: i32 = 15;
    #[allow(unsafe_code)]
    unsafe extern "C" {
        fn mi_option_set(option: i32, value: std::ffi::c_long);
    }
    // SAFETY: `mi_option_set` (exported by the mimalloc library the `mimalloc` crate links)
    // only stores an option value; `mi_option_t` is a C enum (an `int`) and 15 is a valid
    // option. Safe to call at any time from any thread.
    #[allow(unsafe_code)]
    unsafe {
        mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// Process RSS in KiB after the server handled a few requests (so every thread's pending
/// frees were processed; see [`purge_freed_memory_at_once`]).
pub async fn settled_rss_kib(server: &TestServer) -> u64 {
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..4 {
        let _ = held(server).await;
    }
    rss_kib()
}

/// Process RSS in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The server's accounting of what it holds, from `/api/v1/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub connections: u64,
    pub queue_depth: u64,
    pub users: u64,
}

pub async fn stats(server: &TestServer) -> Value {
    let (status, body) = server.http("GET", "/api/v1/stats", None, b"").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats are JSON")
}

pub async fn held(server: &TestServer) -> Held {
    let s = stats(server).await;
    let e = &s["engine"];
    Held {
        connections: e["connections"].as_u64().unwrap_or(u64::MAX),
        queue_depth: e["queue_depth"].as_u64().unwrap_or(u64::MAX),
        users: e["users"].as_u64().unwrap_or(u64::MAX),
    }
}

/// Waits until the engine holds `connections` connections and no queued frame.
pub async fn settle(server: &TestServer, connections: u64) -> Held {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = held(server).await;
        if h.connections == connections && h.queue_depth == 0 {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "server did not return to {connections} connections and an empty queue: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The well-behaved client: user `probe-<tag>`, one WebSocket connection whose socket is read
/// all the time by a background task (so it answers heartbeats like a browser would), and
/// which acks what it gets.
pub struct Probe {
    user: String,
    events: mpsc::UnboundedReceiver<Value>,
    acks: mpsc::UnboundedSender<u64>,
    n: u64,
    pub worst: Duration,
}

impl Probe {
    pub async fn connect(server: &TestServer, tag: &str) -> Probe {
        Probe::connect_with(server, tag, token).await
    }

    /// Connects with a token made by `mint` for the probe's user.
    pub async fn connect_with(
        server: &TestServer,
        tag: &str,
        mint: impl FnOnce(&str) -> String,
    ) -> Probe {
        let user = format!("probe-{tag}");
        let (mut ws, _) =
            tokio_tungstenite::connect_async(server.ws_url(&format!("token={}", mint(&user))))
                .await
                .expect("probe connects");
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (acks, mut ack_rx) = mpsc::unbounded_channel::<u64>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Text(t))) => {
                            let v: Value = serde_json::from_str(&t).expect("server sent JSON");
                            if ev_tx.send(v).is_err() {
                                return;
                            }
                        }
                        Some(Ok(Message::Close(f))) => {
                            let _ = ev_tx.send(json!({"type": "probe_closed", "close": format!("{f:?}")}));
                            return;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            let _ = ev_tx.send(json!({"type": "probe_closed"}));
                            return;
                        }
                    },
                    ack = ack_rx.recv() => match ack {
                        Some(seq) => {
                            let m = json!({"type": "ack", "seq": seq}).to_string();
                            if ws.send(Message::text(m)).await.is_err() {
                                return;
                            }
                        }
                        None => {
                            let _ = ws.close(None).await;
                            return;
                        }
                    },
                }
            }
        });
        let mut p = Probe {
            user,
            events,
            acks,
            n: 0,
            worst: Duration::ZERO,
        };
        let w = p.events.recv().await.expect("welcome");
        assert_eq!(w["type"], "welcome", "{w}");
        p
    }

    /// Publishes one event to the probe user and asserts it arrives within
    /// [`PROBE_DEADLINE`], after `case` was tried.
    pub async fn check(&mut self, server: &TestServer, case: &str) {
        self.n += 1;
        let start = Instant::now();
        let seq = server
            .publish_user(&self.user, json!({"probe": self.n}))
            .await;
        let n = self.n;
        let events = &mut self.events;
        let v = tokio::time::timeout(PROBE_DEADLINE, async {
            loop {
                let v = events.recv().await.expect("probe reader alive");
                assert_ne!(
                    v["type"], "probe_closed",
                    "probe closed after `{case}`: {v}"
                );
                if v["data"]["probe"] == n {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("probe event not received within 1 s after `{case}`"));
        assert_eq!(v["seq"], seq);
        let _ = self.acks.send(seq);
        self.worst = self.worst.max(start.elapsed());
    }
}

/// Counts hostile cases and holds the memory baseline.
pub struct Ledger {
    suite: &'static str,
    cases: AtomicUsize,
    base: Held,
    base_rss: u64,
}

impl Ledger {
    /// Takes the baseline (after the probe connected).
    pub async fn start(suite: &'static str, server: &TestServer, connections: u64) -> Ledger {
        purge_freed_memory_at_once();
        let base = settle(server, connections).await;
        Ledger {
            suite,
            cases: AtomicUsize::new(0),
            base,
            base_rss: settled_rss_kib(server).await,
        }
    }

    /// Records one hostile case.
    pub fn case(&self) {
        self.cases.fetch_add(1, Ordering::Relaxed);
    }

    /// Records `n` hostile cases.
    pub fn cases(&self, n: usize) {
        self.cases.fetch_add(n, Ordering::Relaxed);
    }

    /// Asserts the server's accounting returned to the baseline, the users gauge grew by at
    /// most `authenticated_users` (the distinct users the suite connected as or published to
    /// successfully after [`Ledger::start`]), and RSS to within `rss_tolerance_kib`; prints
    /// the figures.
    pub async fn finish(
        &self,
        server: &TestServer,
        probe: &Probe,
        rss_tolerance_kib: u64,
        authenticated_users: u64,
    ) {
        let after = settle(server, self.base.connections).await;
        let rss = settled_rss_kib(server).await;
        println!(
            "[{}] hostile cases tried: {}; probe worst latency: {:?}; server before: {:?}, \
             RSS {} KiB; after: {:?}, RSS {} KiB",
            self.suite,
            self.cases.load(Ordering::Relaxed),
            probe.worst,
            self.base,
            self.base_rss,
            after,
            rss
        );
        assert_eq!(after.connections, self.base.connections);
        assert_eq!(after.queue_depth, 0);
        assert!(
            after.users >= self.base.users && after.users <= self.base.users + authenticated_users,
            "users with state went from {} to {}, but the suite authenticated as only {} new \
             users: hostile input created user state",
            self.base.users,
            after.users,
            authenticated_users
        );
        assert!(
            rss <= self.base_rss + rss_tolerance_kib,
            "RSS grew from {} KiB to {} KiB (tolerance {rss_tolerance_kib} KiB)",
            self.base_rss,
            rss
        );
    }
}

/// Opens a WebSocket by hand, checks the 101, and reads the welcome frame.
pub async fn raw_ws(server: &TestServer, user: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let req = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        token(user)
    );
    s.write_all(req.as_bytes()).await.expect("write request");
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (op, welcome) = read_frame(&mut s).await.expect("welcome");
    assert_eq!(op, 1);
    assert!(String::from_utf8_lossy(&welcome).contains("\"welcome\""));
    s
}

/// Reads an HTTP response head.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).await.is_err() {
                break;
            }
            head.push(b[0]);
        }
    })
    .await
    .expect("response head in time");
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads one server frame: (opcode, payload); `None` at EOF or reset.
pub async fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(WAIT, async {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.ok()?;
        assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).await.ok()?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).await.ok()?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).await.ok()?;
        Some((h[0] & 0x0f, p))
    })
    .await
    .expect("a frame or EOF in time")
}

/// What the server answered a raw client, up to its close (or EOF).
#[derive(Debug, Default)]
pub struct Answer {
    /// JSON text messages, in order.
    pub messages: Vec<Value>,
    /// Pong frames.
    pub pongs: usize,
    /// The close code, if a close frame came.
    pub close: Option<u16>,
}

impl Answer {
    /// The `code`s of `error` messages.
    pub fn error_codes(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m["type"] == "error")
            .map(|m| m["code"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

/// Reads frames until a close frame or EOF, or until `stop` says enough.
pub async fn read_until(s: &mut TcpStream, mut stop: impl FnMut(&Answer) -> bool) -> Answer {
    let mut a = Answer::default();
    while let Some((op, p)) = read_frame(s).await {
        match op {
            1 => a
                .messages
                .push(serde_json::from_slice(&p).expect("server text is JSON")),
            8 => {
                a.close = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                break;
            }
            0xA => a.pongs += 1,
            _ => {}
        }
        if stop(&a) {
            break;
        }
    }
    a
}

/// Reads until the close frame and returns its code.
pub async fn close_code(s: &mut TcpStream) -> Option<u16> {
    read_until(s, |_| false).await.close
}
