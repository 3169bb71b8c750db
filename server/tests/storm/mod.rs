//! The pieces of the reconnect-storm test: a device (one WebSocket client that reconnects
//! with jittered exponential backoff and `?last_seq=`), a publisher that keeps publishing
//! per-user events until told to stop (retrying each with its `idempotency_key` until it is
//! accepted, so every event it counts was stored exactly once), and the socket count of a
//! process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentcast_tests::{API_KEY, parse_response, token};
use futures_util::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::{self, Message};

/// First reconnect delay bound; each failure doubles it up to [`BACKOFF_CAP`].
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest delay between two connection attempts.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// The name of user `u`.
pub(crate) fn user_name(u: usize) -> String {
    format!("storm-{u}")
}

/// Counters over every device (all `Relaxed`: read once the devices are done or as
/// progress figures; no other memory is published through them).
#[derive(Debug, Default)]
pub(crate) struct Storm {
    /// Connection attempts after a device's first successful connection (reconnects).
    pub(crate) reconnect_attempts: AtomicU64,
    /// Upgrades refused with 503.
    pub(crate) refused_503: AtomicU64,
    /// Upgrades refused with 429.
    pub(crate) refused_429: AtomicU64,
    /// Upgrades refused with another status.
    pub(crate) refused_other: AtomicU64,
    /// Attempts that failed below HTTP (reset, timeout).
    pub(crate) connect_errors: AtomicU64,
    /// Devices connected right now.
    pub(crate) connected: AtomicU64,
    /// Whether a reconnection omits `last_seq` (only to show the test fails without it).
    pub(crate) without_last_seq: AtomicBool,
}

/// One client device of a user, and what it received over all its connections.
#[derive(Debug)]
pub(crate) struct Device {
    /// Index of its user.
    pub(crate) user: usize,
    /// Seqs of every event received, in the order received.
    pub(crate) got: Mutex<Vec<u64>>,
    /// The last seq received (what a reconnection resumes after).
    pub(crate) last: AtomicU64,
    /// Protocol violations seen: a gap, another user's event, a seq not above the last.
    pub(crate) problems: Mutex<Vec<String>>,
    /// Connections of this device that died under it.
    pub(crate) drops: AtomicU64,
    /// When it was last (re)connected, after a drop.
    pub(crate) resumed_at: Mutex<Option<Instant>>,
    /// Whether it is connected now.
    pub(crate) up: AtomicBool,
}

impl Device {
    /// A device of user `user` that has received nothing.
    pub(crate) fn new(user: usize) -> Arc<Device> {
        Arc::new(Device {
            user,
            got: Mutex::new(Vec::new()),
            last: AtomicU64::new(0),
            problems: Mutex::new(Vec::new()),
            drops: AtomicU64::new(0),
            resumed_at: Mutex::new(None),
            up: AtomicBool::new(false),
        })
    }

    fn problem(&self, p: String) {
        self.problems.lock().unwrap().push(p);
    }

    /// Handles one text frame: records an event's seq, and any violation.
    fn received(&self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return self.problem(format!("not JSON: {text}"));
        };
        if v["type"] == "gap" {
            return self.problem(format!("gap: {v}"));
        }
        let Some(seq) = v["seq"].as_u64() else {
            return; // pong, error, …: not an event
        };
        if v["data"]["u"].as_u64() != Some(self.user as u64) {
            self.problem(format!("leak: user {} got {v}", self.user));
        }
        let last = self.last.load(Relaxed);
        if seq <= last {
            self.problem(format!(
                "seq {seq} after {last} (duplicate or out of order)"
            ));
        }
        self.got.lock().unwrap().push(seq);
        self.last.store(seq.max(last), Relaxed);
    }
}

/// `min(cap, base × 2^failures)`, jittered uniformly into its upper half.
pub(crate) fn backoff(failures: u32) -> Duration {
    let d = BACKOFF_BASE
        .saturating_mul(1 << failures.min(16))
        .min(BACKOFF_CAP);
    let half = d / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

/// Runs device `d` against `addr` until `stop` turns true: connects (its first attempt under
/// a `gate` permit, so the initial load opens with bounded concurrency), reads events, and on
/// any loss of the connection or refusal reconnects after [`backoff`] with `?last_seq=`.
pub(crate) async fn run_device(
    addr: SocketAddr,
    d: Arc<Device>,
    storm: Arc<Storm>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let token = token(&user_name(d.user));
    let mut permit = Some(gate.acquire_owned().await.expect("gate open"));
    let mut failures = 0u32;
    let mut ever_connected = false;
    while !*stop.borrow() {
        if ever_connected {
            storm.reconnect_attempts.fetch_add(1, Relaxed);
        }
        // `last_seq` once an event was received, as `sdk/js/src/client.js` does: seqs start at a
        // per-user base, so `last_seq=0` would ask for events before it (a `gap`), while no
        // `last_seq` replays from the ack cursor, which is everything held here.
        let mut url = format!("ws://{addr}/ws?token={token}");
        let last = d.last.load(Relaxed);
        if last > 0 && !storm.without_last_seq.load(Relaxed) {
            url.push_str(&format!("&last_seq={last}"));
        }
        let attempt = tokio::time::timeout(Duration::from_secs(10), async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
            // The welcome comes first: only then is the resume registered.
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains(r#""welcome""#) => Ok(ws),
                other => Err(tungstenite::Error::Io(std::io::Error::other(format!(
                    "no welcome: {other:?}"
                )))),
            }
        })
        .await;
        let mut ws = match attempt {
            Ok(Ok(ws)) => ws,
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let counter = match resp.status().as_u16() {
                    503 => &storm.refused_503,
                    429 => &storm.refused_429,
                    _ => &storm.refused_other,
                };
                counter.fetch_add(1, Relaxed);
                tokio::time::sleep(backoff(failures)).await;
                failures += 1;
                continue;
            }
            Ok(Err(_)) | Err(_) => {
                storm.connect_errors.fetch_add(1, Relaxed);
                tokio::time::sleep(backoff(failures)).await;
                failures += 1;
                continue;
            }
        };
        drop(permit.take());
        if ever_connected {
            *d.resumed_at.lock().unwrap() = Some(Instant::now());
        }
        ever_connected = true;
        d.up.store(true, Relaxed);
        storm.connected.fetch_add(1, Relaxed);
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => d.received(&t),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                _ = stop.changed() => {
                    storm.connected.fetch_sub(1, Relaxed);
                    return;
                }
            }
        }
        d.up.store(false, Relaxed);
        storm.connected.fetch_sub(1, Relaxed);
        d.drops.fetch_add(1, Relaxed);
        // The first retry after a drop waits `backoff(0)`; the count restarts from there.
        tokio::time::sleep(backoff(0)).await;
        failures = 1;
    }
}

/// What the publisher got accepted: per user, `(seq, publish index)` in acceptance order.
#[derive(Debug, Default)]
pub(crate) struct Accepted {
    /// Per user index.
    pub(crate) by_user: Mutex<HashMap<usize, Vec<u64>>>,
    /// Publishes accepted.
    pub(crate) events: AtomicU64,
    /// Attempts answered with something other than 200 (or not answered), then retried.
    pub(crate) retried: AtomicU64,
}

/// One `POST /api/v1/publish` on a fresh connection: the status (0 when the connection died
/// before an answer) and the body.
async fn post(addr: SocketAddr, body: &str) -> (u16, String) {
    let attempt = tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let head = format!(
            "POST /api/v1/publish HTTP/1.1\r\nHost: storm\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(head.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok()?;
        Some(parse_response(&raw))
    })
    .await;
    attempt.ok().flatten().unwrap_or((0, String::new()))
}

/// Publishes to random users of `users` through `addr`, `per_sec` events a second over
/// `workers` tasks, until `stop`; each event is retried with its `idempotency_key` until
/// accepted. Returns when every worker finished its last event.
pub(crate) async fn publish_until(
    addr: SocketAddr,
    users: usize,
    per_sec: u32,
    workers: u32,
    accepted: Arc<Accepted>,
    stop: watch::Receiver<bool>,
) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (accepted, stop, next) = (Arc::clone(&accepted), stop.clone(), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) * workers / per_sec);
            while !*stop.borrow() {
                tick.tick().await;
                let i = next.fetch_add(1, Relaxed);
                let u = rand::rng().random_range(0..users);
                let body = json!({
                    "user_id": user_name(u), "type": "tool_executing", "run_id": "r",
                    "idempotency_key": format!("storm-{i}"), "data": {"u": u, "i": i},
                })
                .to_string();
                let deadline = Instant::now() + Duration::from_secs(20);
                let seq = loop {
                    let (status, answer) = post(addr, &body).await;
                    if status == 200 {
                        let v: Value = serde_json::from_str(&answer).unwrap_or_default();
                        break v["seq"].as_u64().expect("a receipt has a seq");
                    }
                    assert!(
                        Instant::now() < deadline,
                        "publish {i} not accepted within 20 s: {status} {answer}"
                    );
                    accepted.retried.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                accepted
                    .by_user
                    .lock()
                    .unwrap()
                    .entry(u)
                    .or_default()
                    .push(seq);
                accepted.events.fetch_add(1, Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher worker");
    }
}

/// Sockets process `pid` holds (entries of `/proc/<pid>/fd` that are sockets).
pub(crate) fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}
