//! The `tokens` scenario: AI answers streamed token by token. `--runs R` concurrent runs,
//! each one user with one WebSocket receiver, each publishing `--tokens-per-sec T` tokens
//! for `--duration` seconds: `message_started`, `T × duration` `message_delta` events whose
//! `data.delta` is an 8-character token (`"tok0001 "`), then `message_completed`.
//!
//! `--token-publish stream` (the default) sends every event as one NDJSON line over
//! `--publishers` streaming publish connections (`POST /api/v1/publish/stream`; run `r` on
//! connection `r % publishers`; all runs of a connection write their token of a tick in one
//! HTTP chunk) and reads the receipts as they come. `--token-publish requests` sends one
//! `POST /api/v1/publish` per event over the same number of keep-alive connections, so the CPU
//! cost per token of the two can be compared.
//!
//! Each receiver rebuilds its message's text from the `data.delta` of every
//! `message_delta` frame, appending a merged frame's delta (one with `seq_from`, whose delta
//! is the concatenation of the deltas it covers) like any other, and checks at
//! `message_completed` that the text equals what was sent: `chars_lost` counts the characters
//! missing (or wrong: a text that differs counts as lost from the first difference).
//! Latency is publish → receive per token: the publisher stamps each token when it writes it,
//! the receiver finds the tokens a frame covers from the text's length (tokens have a fixed
//! width), so a merged frame gives one sample per token it carries. Merged frames are counted
//! (`merged_frames`, `merged_tokens`).
//!
//! CPU seconds of the server and of the bench process are read from `/proc` just before the
//! first token and after the last receiver is done; per token they are the figures to
//! compare between the two publish modes. `--warmup`, `--connections`, `--users` and
//! `--payload-bytes` do not apply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::client::unix_nanos;
use super::plan::{BenchArgs, TokenPublish};
use super::report::{Latency, Report, new_histogram};
use super::{cpu_snapshot, procfs, round2};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::tier::Tier;

/// Characters of each token (`"tok0001 "`).
pub const TOKEN_CHARS: usize = 8;
/// Most tokens one run may send (the token text holds 4 hex digits).
pub const MAX_TOKENS_PER_RUN: u64 = 0x1_0000;

/// The tokens scenario's own figures (also in [`Report::tokens`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TokenReport {
    /// `stream` or `requests`.
    pub publish: String,
    /// Concurrent runs (one receiver each).
    pub runs: u64,
    /// Tokens per second asked for, per run.
    pub tokens_per_sec: f64,
    /// Tokens accepted by the server (ok receipts) over all runs.
    pub tokens_sent: u64,
    /// Characters sent in deltas over all runs.
    pub chars_sent: u64,
    /// Characters rebuilt by the receivers, matching what was sent.
    pub chars_received: u64,
    /// `chars_sent - chars_received`: must be 0.
    pub chars_lost: u64,
    /// Runs whose receiver saw `message_completed` with a text equal to what was sent.
    pub runs_complete: u64,
    /// Frames that merged several deltas (`seq_from` present).
    pub merged_frames: u64,
    /// Tokens carried by merged frames.
    pub merged_tokens: u64,
    /// Server CPU microseconds per token.
    pub server_cpu_us_per_token: Option<f64>,
    /// Bench CPU microseconds per token.
    pub client_cpu_us_per_token: Option<f64>,
}

/// Checks the scenario's flags; every refusal names its flag.
pub(crate) fn validate(args: &BenchArgs, cfg: &Config) -> Result<(), String> {
    if !(1..=10_000).contains(&args.runs) {
        return Err("--runs must be in [1, 10000]".into());
    }
    if !(args.tokens_per_sec.is_finite()
        && args.tokens_per_sec > 0.0
        && args.tokens_per_sec <= 10_000.0)
    {
        return Err("--tokens-per-sec must be in (0, 10000]".into());
    }
    if !(args.duration.is_finite() && args.duration >= 0.1 && args.duration <= 3600.0) {
        return Err("--duration must be a number of seconds in [0.1, 3600]".into());
    }
    if tokens_per_run(args) > MAX_TOKENS_PER_RUN {
        return Err(format!(
            "--tokens-per-sec × --duration must be at most {MAX_TOKENS_PER_RUN} tokens per run"
        ));
    }
    if !(1..=256).contains(&args.publishers) {
        return Err("--publishers must be in [1, 256]".into());
    }
    if cfg.api_key.is_none() || cfg.jwt_secret.is_none() {
        return Err("the server's --api-key and --jwt-secret are needed".into());
    }
    Ok(())
}

fn tokens_per_run(args: &BenchArgs) -> u64 {
    ((args.tokens_per_sec * args.duration).round() as u64).max(1)
}

/// The text of token `k`.
fn token(k: u64) -> String {
    format!("tok{k:04x} ")
}

/// What the publishers and receivers share.
struct Shared {
    /// Per run, per token: when it was written (ns since the Unix epoch), 0 before.
    sent_at: Vec<Vec<AtomicU64>>,
    /// Events accepted (ok receipt or 200) over all runs, started and completed included.
    accepted: AtomicU64,
    /// Publish failures (error receipts, non-200, I/O).
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.first_error.lock() {
            f.get_or_insert(e);
        }
    }
}

/// What one receiver saw.
#[derive(Debug, Default)]
struct Received {
    text: String,
    completed: bool,
    merged_frames: u64,
    merged_tokens: u64,
    latencies_ns: Vec<u64>,
    disconnected: bool,
}

/// Runs the scenario and returns its report. Blocks; must not be called inside a runtime.
pub(crate) fn run(args: &BenchArgs, cfg: &Config) -> anyhow::Result<Report> {
    validate(args, cfg).map_err(|e| anyhow!(e))?;
    let (addr, host) =
        super::plan::parse_url(args.url.split(',').next().unwrap_or("")).map_err(|e| anyhow!(e))?;
    let auth = Authenticator::from_config(cfg)?;
    let api_key = cfg.api_key.clone().unwrap_or_default();
    let server_pid = args
        .server_pid
        .or_else(|| procfs::listening_pid(addr.port()));
    let run_tag: u32 = rand::random();
    let per_run = tokens_per_run(args);
    let runs = args.runs;
    let streams = args.publishers.min(runs);
    let period = Duration::from_secs_f64(1.0 / args.tokens_per_sec);
    eprintln!(
        "bench {}: tokens scenario, {runs} runs × {} tokens/s for {:.1} s ({per_run} tokens each), \
         publish by {}, {streams} connections, run {run_tag:08x}",
        args.url,
        args.tokens_per_sec,
        args.duration,
        args.token_publish.as_str()
    );
    let shared = Arc::new(Shared {
        sent_at: (0..runs)
            .map(|_| (0..per_run).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        accepted: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let drain = Duration::from_secs_f64(args.drain.max(0.0));
    let mode = args.token_publish;
    let (received, before, after, window, (load_before, load_after)) = rt.block_on(async {
        // Receivers first, so no token is published to a user without a connection.
        let mut sockets = Vec::with_capacity(runs);
        for r in 0..runs {
            let user = user_of(run_tag, r);
            let token = auth
                .mint(&user, Tier::Enterprise, 24 * 3600, &[])
                .map_err(|e| anyhow!("minting a token: {e}"))?;
            let tcp = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connect {addr}"))?;
            let url = format!("ws://{host}/ws?token={token}");
            let (ws, _) = tokio_tungstenite::client_async(url, tcp)
                .await
                .map_err(|e| anyhow!("WebSocket upgrade: {e}"))?;
            sockets.push(ws);
        }
        let mut receivers = Vec::with_capacity(runs);
        for (r, mut ws) in sockets.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            receivers.push(tokio::spawn(async move {
                let mut got = Received::default();
                let message = message_of(r);
                loop {
                    let Some(Ok(msg)) = ws.next().await else {
                        got.disconnected = true;
                        break;
                    };
                    let Message::Text(t) = msg else { continue };
                    let now = unix_nanos();
                    let Ok(v) = serde_json::from_str::<Value>(&t) else {
                        continue;
                    };
                    if v["data"]["message_id"] != message.as_str() {
                        continue;
                    }
                    match v["type"].as_str() {
                        Some("message_delta") => {
                            let Some(d) = v["data"]["delta"].as_str() else {
                                continue;
                            };
                            let first = got.text.len() / TOKEN_CHARS;
                            got.text.push_str(d);
                            let end = got.text.len() / TOKEN_CHARS;
                            if v.get("seq_from").is_some() {
                                got.merged_frames += 1;
                                got.merged_tokens += (end - first) as u64;
                            }
                            for k in first..end {
                                let at = shared.sent_at[r]
                                    .get(k)
                                    .map_or(0, |a| a.load(Ordering::Relaxed));
                                if at > 0 {
                                    got.latencies_ns.push(now.saturating_sub(at));
                                }
                            }
                        }
                        Some("message_completed") => {
                            got.completed = true;
                            break;
                        }
                        _ => {}
                    }
                }
                got
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let load_before = procfs::load_average();
        let before = cpu_snapshot(server_pid, &[]);
        let window_start = std::time::Instant::now();
        let start = Instant::now() + Duration::from_millis(20);
        let mut publishers = Vec::with_capacity(streams);
        for s in 0..streams {
            let owned: Vec<usize> = (s..runs).step_by(streams).collect();
            let p = Publisher {
                addr,
                host: host.clone(),
                api_key: api_key.clone(),
                run_tag,
                owned,
                per_run,
                period,
                start,
                shared: Arc::clone(&shared),
            };
            publishers.push(tokio::spawn(async move {
                let r = match mode {
                    TokenPublish::Stream => p.stream().await,
                    TokenPublish::Requests => p.requests().await,
                };
                if let Err(e) = r {
                    p.shared.error(e);
                }
            }));
        }
        for p in publishers {
            let _ = p.await;
        }
        let window = window_start.elapsed().as_secs_f64();
        let mut received = Vec::with_capacity(runs);
        let deadline = Instant::now() + drain;
        for h in receivers {
            let abort = h.abort_handle();
            match tokio::time::timeout_at(deadline, h).await {
                Ok(Ok(got)) => received.push(got),
                _ => {
                    abort.abort();
                    received.push(Received {
                        disconnected: true,
                        ..Received::default()
                    });
                }
            }
        }
        let after = cpu_snapshot(server_pid, &[]);
        let load = (load_before, procfs::load_average());
        Ok::<_, anyhow::Error>((received, before, after, window, load))
    })?;

    let expected: String = (0..per_run).map(token).collect();
    let mut hist = new_histogram();
    let mut t = TokenReport {
        publish: mode.as_str().into(),
        runs: runs as u64,
        tokens_per_sec: args.tokens_per_sec,
        tokens_sent: tokens_only(shared.accepted.load(Ordering::Relaxed), runs as u64),
        chars_sent: (expected.len() * runs) as u64,
        ..TokenReport::default()
    };
    let mut disconnects = 0;
    for got in &received {
        let same = expected
            .bytes()
            .zip(got.text.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        t.chars_received += same as u64;
        if got.completed && got.text == expected {
            t.runs_complete += 1;
        }
        if got.disconnected {
            disconnects += 1;
        }
        t.merged_frames += got.merged_frames;
        t.merged_tokens += got.merged_tokens;
        for &ns in &got.latencies_ns {
            let _ = hist.record(ns.max(1));
        }
    }
    t.chars_lost = t.chars_sent - t.chars_received;
    let tokens = (per_run * runs as u64) as f64;
    let mut r = Report {
        scenario: "tokens".into(),
        url: args.url.clone(),
        run_id: format!("{run_tag:08x}"),
        connections_requested: runs as u64,
        connections: runs as u64,
        users: runs as u64,
        duration_secs: window,
        target_rate: args.tokens_per_sec * runs as f64,
        events_sent: t.tokens_sent,
        events_per_sec: t.tokens_sent as f64 / window.max(1e-3),
        publish_errors: shared.errors.load(Ordering::Relaxed),
        publish_error: shared.first_error.lock().ok().and_then(|e| e.clone()),
        deliveries_expected: per_run * runs as u64,
        deliveries_received: t.chars_received / TOKEN_CHARS as u64,
        loss: t.chars_lost,
        disconnects,
        latency: Latency::of(&hist),
        server_pid,
        load_before,
        load_after,
        ..Report::default()
    };
    if let (Some(a), Some(b)) = (before.server, after.server) {
        r.server_cpu_secs = Some(round2(b - a));
        t.server_cpu_us_per_token = Some(round2((b - a) * 1e6 / tokens));
    }
    if let (Some(a), Some(b)) = (before.client, after.client) {
        r.client_cpu_secs = Some(round2(b - a));
        t.client_cpu_us_per_token = Some(round2((b - a) * 1e6 / tokens));
    }
    r.tokens = Some(t);
    Ok(r)
}

fn user_of(tag: u32, r: usize) -> String {
    format!("tok-{tag:08x}-{r}")
}

fn message_of(r: usize) -> String {
    format!("m{r}")
}

/// The events of run `r`: `message_started` (`k = None` before the first token),
/// `message_delta` for token `k`, `message_completed` (`k = Some(per_run)`).
fn event(tag: u32, r: usize, k: Option<u64>, per_run: u64) -> Value {
    let (user, run, m) = (user_of(tag, r), format!("run{r}"), message_of(r));
    match k {
        None => json!({"user_id": user, "type": "message_started", "run_id": run,
            "data": {"message_id": m, "role": "assistant"}}),
        Some(k) if k < per_run => json!({"user_id": user, "type": "message_delta", "run_id": run,
            "data": {"message_id": m, "delta": token(k)}}),
        Some(_) => json!({"user_id": user, "type": "message_completed", "run_id": run,
            "data": {"message_id": m}}),
    }
}

/// One publishing connection and the runs it carries.
struct Publisher {
    addr: SocketAddr,
    host: String,
    api_key: String,
    run_tag: u32,
    owned: Vec<usize>,
    per_run: u64,
    period: Duration,
    start: Instant,
    shared: Arc<Shared>,
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
    async fn stream(&self) -> Result<(), String> {
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
    async fn requests(&self) -> Result<(), String> {
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
                match super::publisher::send(&mut conn, self.addr, &req, &mut resp).await {
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

/// Tokens among `accepted` events: each run also published its started and completed.
fn tokens_only(accepted: u64, runs: u64) -> u64 {
    accepted.saturating_sub(2 * runs)
}
