//! The `tokens` scenario: AI answers streamed token by token. `--runs R` concurrent runs,
//! each one user with `--tabs` WebSocket receivers (default 1), each publishing `--tokens-per-sec T` tokens
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
//! `--stalled S` gives the first `S` runs one more receiver that reads nothing until every
//! token is published (see [`receive`]): its ring fills, its deltas merge, and it must still
//! rebuild the exact text. Its merges are reported apart (`stalled_merged_*`), and the
//! server's resident memory is sampled every 100 ms during the run (`server_rss_kib_*`), so
//! a reader can see that merging keeps memory bounded.
//!
//! CPU seconds of the server and of the bench process are read from `/proc` just before the
//! first token and after the last receiver is done; per token they are the figures to
//! compare between the two publish modes. `--warmup`, `--connections`, `--users`,
//! `--procs` and `--payload-bytes` do not apply (the connections are `runs × tabs +
//! stalled`, all in this process).

mod publish;
mod receive;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::anyhow;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use self::publish::Publisher;
use self::receive::Received;
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
    /// Receivers per run (`--tabs`).
    #[serde(default)]
    pub tabs: u64,
    /// Runs with one more, stalled receiver (`--stalled`).
    #[serde(default)]
    pub stalled: u64,
    /// Frames of the stalled receivers that merged several deltas.
    #[serde(default)]
    pub stalled_merged_frames: u64,
    /// Tokens those frames carried.
    #[serde(default)]
    pub stalled_merged_tokens: u64,
    /// The server's resident memory just before the first token, KiB.
    #[serde(default)]
    pub server_rss_kib_start: Option<u64>,
    /// Its largest sample during the run (every 100 ms), KiB.
    #[serde(default)]
    pub server_rss_kib_peak: Option<u64>,
    /// After the last receiver was done, KiB.
    #[serde(default)]
    pub server_rss_kib_end: Option<u64>,
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
    if !(1..=64).contains(&args.tabs) {
        return Err("--tabs must be in [1, 64]".into());
    }
    if args.stalled > args.runs {
        return Err("--stalled must be at most --runs".into());
    }
    let sockets = (receivers(args) + args.publishers.min(args.runs) + 64) as u64;
    if let Some(limit) = procfs::open_files_limit()
        && sockets > limit
    {
        return Err(format!(
            "--runs × --tabs + --stalled needs about {sockets} open files, over this process's \
             limit of {limit}"
        ));
    }
    if cfg.api_key.is_none() || cfg.jwt_secret.is_none() {
        return Err("the server's --api-key and --jwt-secret are needed".into());
    }
    Ok(())
}

/// Receiver connections: `tabs` per run, plus the stalled ones.
fn receivers(args: &BenchArgs) -> usize {
    args.runs * args.tabs + args.stalled
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

/// Runs the scenario and returns its report. Blocks; must not be called inside a runtime.
pub(crate) fn run(args: &BenchArgs, cfg: &Config) -> anyhow::Result<Report> {
    validate(args, cfg).map_err(|e| anyhow!(e))?;
    let (addr, host) =
        super::plan::parse_url(args.url.split(',').next().unwrap_or("")).map_err(|e| anyhow!(e))?;
    let auth = Authenticator::from_config(cfg)?;
    let api_key = cfg.api_key.clone().unwrap_or_default();
    let server_pid = args
        .server_pid
        .first()
        .copied()
        .or_else(|| procfs::listening_pid(addr.port()));
    let run_tag: u32 = rand::random();
    let per_run = tokens_per_run(args);
    let runs = args.runs;
    let streams = args.publishers.min(runs);
    let period = Duration::from_secs_f64(1.0 / args.tokens_per_sec);
    eprintln!(
        "bench {}: tokens scenario, {runs} runs × {} tokens/s for {:.1} s ({per_run} tokens each), \
         {} receivers per run + {} stalled, publish by {}, {streams} connections, run {run_tag:08x}",
        args.url,
        args.tokens_per_sec,
        args.duration,
        args.tabs,
        args.stalled,
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
    let (tabs, stalled) = (args.tabs, args.stalled);
    let measured = rt.block_on(async {
        // Receivers first, so no token is published to a user without a connection. Receiver
        // `i` belongs to run `i % runs`; the last `stalled` are the stalled ones.
        let total = receivers(args);
        let (published_tx, published_rx) = watch::channel(false);
        let mut receivers = Vec::with_capacity(total);
        for i in 0..total {
            let r = i % runs;
            let is_stalled = i >= runs * tabs;
            let token = auth
                .mint(&user_of(run_tag, r), Tier::Enterprise, 24 * 3600, &[])
                .map_err(|e| anyhow!("minting a token: {e}"))?;
            let ws = receive::connect(addr, &host, &token, is_stalled).await?;
            let stall = is_stalled.then(|| published_rx.clone());
            receivers.push(tokio::spawn(receive::receive(
                ws,
                r,
                message_of(r),
                Arc::clone(&shared),
                stall,
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let load_before = procfs::load_average();
        let before = cpu_snapshot(server_pid.as_slice(), &[]);
        let rss_start = server_pid.and_then(procfs::rss_kib);
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = tokio::spawn(sample_peak_rss(server_pid, Arc::clone(&sampling)));
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
        let _ = published_tx.send(true);
        let window = window_start.elapsed().as_secs_f64();
        let mut received = Vec::with_capacity(total);
        let deadline = Instant::now() + drain;
        for (i, h) in receivers.into_iter().enumerate() {
            let abort = h.abort_handle();
            match tokio::time::timeout_at(deadline, h).await {
                Ok(Ok(got)) => received.push(got),
                _ => {
                    abort.abort();
                    received.push(Received {
                        disconnected: true,
                        stalled: i >= runs * tabs,
                        ..Received::default()
                    });
                }
            }
        }
        let after = cpu_snapshot(server_pid.as_slice(), &[]);
        sampling.store(false, Ordering::Relaxed);
        let rss_peak = sampler.await.unwrap_or(None);
        let rss_end = server_pid.and_then(procfs::rss_kib);
        Ok::<_, anyhow::Error>(Measured {
            received,
            before,
            after,
            window,
            load: (load_before, procfs::load_average()),
            rss: (rss_start, rss_peak, rss_end),
        })
    })?;
    let Measured {
        received,
        before,
        after,
        window,
        load: (load_before, load_after),
        rss: (rss_start, rss_peak, rss_end),
    } = measured;

    let expected: String = (0..per_run).map(token).collect();
    let mut hist = new_histogram();
    let mut t = TokenReport {
        publish: mode.as_str().into(),
        runs: runs as u64,
        tokens_per_sec: args.tokens_per_sec,
        tokens_sent: tokens_only(shared.accepted.load(Ordering::Relaxed), runs as u64),
        chars_sent: (expected.len() * received.len()) as u64,
        tabs: tabs as u64,
        stalled: stalled as u64,
        server_rss_kib_start: rss_start,
        server_rss_kib_peak: rss_peak.max(rss_start).max(rss_end),
        server_rss_kib_end: rss_end,
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
        if got.stalled {
            t.stalled_merged_frames += got.merged_frames;
            t.stalled_merged_tokens += got.merged_tokens;
        } else {
            t.merged_frames += got.merged_frames;
            t.merged_tokens += got.merged_tokens;
        }
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
        connections_requested: received.len() as u64,
        connections: received.len() as u64,
        users: runs as u64,
        duration_secs: window,
        target_rate: args.tokens_per_sec * runs as f64,
        events_sent: t.tokens_sent,
        events_per_sec: t.tokens_sent as f64 / window.max(1e-3),
        publish_errors: shared.errors.load(Ordering::Relaxed),
        publish_error: shared.first_error.lock().ok().and_then(|e| e.clone()),
        deliveries_expected: per_run * received.len() as u64,
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

/// What the runtime part of [`run`] measured.
struct Measured {
    received: Vec<Received>,
    before: super::CpuSnapshot,
    after: super::CpuSnapshot,
    window: f64,
    load: (Option<String>, Option<String>),
    rss: (Option<u64>, Option<u64>, Option<u64>),
}

/// The largest resident memory of `pid` sampled every 100 ms while `on` holds, KiB.
async fn sample_peak_rss(pid: Option<u32>, on: Arc<AtomicBool>) -> Option<u64> {
    let pid = pid?;
    let mut peak = None;
    while on.load(Ordering::Relaxed) {
        peak = peak.max(procfs::rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
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

/// Tokens among `accepted` events: each run also published its started and completed.
fn tokens_only(accepted: u64, runs: u64) -> u64 {
    accepted.saturating_sub(2 * runs)
}
