//! `agentcast bench`: the load generator.
//!
//! It opens `--connections` WebSocket connections for `--users` users (connection `c`
//! belongs to user `c % users`, so each user has `connections / users` devices), publishes
//! through the real HTTP API (`POST /api/v1/publish`, one event per request, over
//! `--publishers` keep-alive connections), and measures on every receiving connection:
//! publish → receive latency (HDR histogram), loss (expected vs received), cross-user leaks
//! (must be 0) and duplicates; plus the connect rate, the server's and its own CPU time over
//! the measurement window, and the server's memory before and after connecting.
//!
//! Scenarios: `per-user` sends `--rate` events/s, each to a user drawn uniformly at random;
//! `broadcast` sends one `{"broadcast": true}` event every `--interval-ms`; `tokens` streams
//! AI answers token by token through the streaming publish connection (or, with
//! `--token-publish requests`, one request per token) and checks that every receiver
//! rebuilds the exact text (see [`tokens`]; it has its own receivers and publishers, in this
//! process).
//!
//! ```text
//! agentcast --jwt-secret S --api-key K bench --connections 15000 --users 7500 \
//!     --scenario per-user --rate 10000 --duration 30 --procs 2 --json report.json
//! ```
//!
//! # Processes
//!
//! With `--procs 0` (the default) the receiving connections live on one extra thread of this
//! process. With `--procs P` they are spread over `P` child processes of the same binary
//! (`agentcast bench --child-index i ...`), each binding its sockets to its own source address
//! `127.0.0.(2+i)` when the server is on loopback, so neither one process's open-files limit
//! nor one address's ephemeral ports bound the run. A child prints `progress` lines and, after
//! the parent writes `finish` to its stdin, one `report` line (JSON; the histogram as
//! hdrhistogram V2 in base64) on stdout; the parent merges them. The parent itself only
//! publishes and reports.
//!
//! # Timeline
//!
//! connect everything (progress on stderr) → settle 1 s and read the server's RSS → publish
//! `--warmup` seconds of unmeasured events → read CPU times → publish `--duration` seconds of
//! measured events → wait until every expected delivery arrived (at most `--drain` s) → read
//! CPU times → collect the receivers' counts → with `--floor` (broadcast only), settle 1 s and
//! measure the loopback floor with the same connections, rounds and interval, writing the
//! largest measured frame the receivers saw ([`floor`]) → print the table, write `--json`.
//!
//! The exit status is 0 when every connection connected and every measured event reached
//! every device it was meant for, once, with no leak and no publish error; 1 otherwise; 2 for
//! flags that do not make a valid plan.
//!
//! # Layout
//!
//! - `plan` (private; [`BenchArgs`] and [`Plan`] are re-exported): the flags and
//!   their validation;
//! - `children` (private): receiver groups in this process or in child processes;
//! - [`floor`]: the loopback floor (`--floor`, and `benches/examples/loopback_floor.rs`);
//! - [`payload`]: the probe in each event's `data` and its cheap parse;
//! - [`client`]: the minimal WebSocket client and the receiver groups;
//! - [`publisher`]: the minimal HTTP publisher and its schedule;
//! - [`report`]: histograms, the report, the table;
//! - [`tokens`]: the tokens scenario (streamed answers, text reassembly, merges);
//! - [`procfs`]: CPU, memory, pid lookup from `/proc`.

mod children;
pub mod client;
pub mod floor;
pub mod payload;
mod plan;
pub mod procfs;
pub mod publisher;
pub mod report;
pub mod tokens;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::time::Instant;

use crate::auth::Authenticator;
use crate::config::Config;
use children::Group;
pub use plan::{BenchArgs, Plan, Scenario, TokenPublish};
use publisher::PublishProgress;
use report::{Latency, Report};

/// Parses a whole command line (`agentcast [key flags] bench [flags]`) as the binary does,
/// and loads the configuration it names: for embedding the bench, and for tests.
pub fn parse_command_line<I, T>(argv: I) -> Result<(BenchArgs, Config), String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = crate::cli::Cli::try_parse_args(argv).map_err(|e| e.to_string())?;
    let cfg = cli.config().map_err(|e| e.to_string())?;
    match cli.command {
        crate::cli::Command::Bench { bench, .. } => Ok((bench, cfg)),
        _ => Err("not a bench command line".into()),
    }
}

/// The `bench` subcommand: runs, prints the table, writes the JSON, and exits 0 only for a
/// clean run (see the [module docs](self)).
pub fn main(args: &BenchArgs, cfg: &Config) -> anyhow::Result<ExitCode> {
    if let Some(i) = args.child_index {
        return children::child_main(i, args, cfg).map(|()| ExitCode::SUCCESS);
    }
    if let Some(addr) = &args.floor_reader {
        return floor::reader_main(addr, args.connections).map(|()| ExitCode::SUCCESS);
    }
    if let Err(e) = Plan::new(args, cfg) {
        eprintln!("agentcast bench: {e}");
        return Ok(ExitCode::from(2));
    }
    let report = run(args, cfg)?;
    println!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// CPU seconds of the server (summed over its pids) and of the load generator (this process
/// and its children).
#[derive(Debug, Clone)]
pub(crate) struct CpuSnapshot {
    server: Option<f64>,
    client: Option<f64>,
    server_wait: Option<f64>,
    client_wait: Option<f64>,
    /// Each server pid's CPU seconds (`None`: gone, e.g. a node killed during the run).
    per_server: Vec<Option<f64>>,
}

/// The sum of `f` over `pids`, `None` if any is unreadable.
fn sum_over(pids: impl IntoIterator<Item = u32>, f: fn(u32) -> Option<f64>) -> Option<f64> {
    pids.into_iter()
        .map(f)
        .try_fold(0.0, |acc, v| v.map(|v| acc + v))
}

fn cpu_snapshot(servers: &[u32], children: &[u32]) -> CpuSnapshot {
    let me = std::iter::once(std::process::id()).chain(children.iter().copied());
    let (server, server_wait) = if servers.is_empty() {
        (None, None)
    } else {
        (
            sum_over(servers.iter().copied(), procfs::cpu_secs),
            sum_over(servers.iter().copied(), procfs::run_queue_wait_secs),
        )
    };
    CpuSnapshot {
        server,
        client: sum_over(me.clone(), procfs::cpu_secs),
        server_wait,
        client_wait: sum_over(me, procfs::run_queue_wait_secs),
        per_server: servers.iter().map(|&p| procfs::cpu_secs(p)).collect(),
    }
}

/// The summed RSS of `pids`, KiB (`None` if any is unreadable, or there is none).
fn rss_sum(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|&p| procfs::rss_kib(p))
        .try_fold(0, |acc, v| v.map(|v| acc + v))
}

fn total(groups: &[Group]) -> [u64; 4] {
    groups.iter().fold([0; 4], |mut acc, g| {
        for (a, v) in acc.iter_mut().zip(g.progress().snapshot()) {
            *a += v;
        }
        acc
    })
}

/// Runs a whole benchmark (see the [module docs](self)) and returns its report. Blocks the
/// calling thread, which must not be inside a tokio runtime.
pub fn run(args: &BenchArgs, cfg: &Config) -> anyhow::Result<Report> {
    if args.scenario == Scenario::Tokens {
        return tokens::run(args, cfg);
    }
    let plan = Plan::new(args, cfg).map_err(|e| anyhow!(e))?;
    let auth = Arc::new(Authenticator::from_config(cfg)?);
    let server_pids: Vec<u32> = if args.server_pid.is_empty() {
        procfs::listening_pid(plan.addr.port())
            .into_iter()
            .collect()
    } else {
        args.server_pid.clone()
    };
    let server_pid = server_pids.first().copied();
    let rss_before = rss_sum(&server_pids);
    eprintln!(
        "bench {}: {} connections, {} users, {} scenario, run {:08x}, server pids {}",
        args.url,
        plan.connections,
        plan.users,
        args.scenario.as_str(),
        plan.run,
        if server_pids.is_empty() {
            "unknown".into()
        } else {
            format!("{server_pids:?}")
        }
    );
    let connect_start = std::time::Instant::now();
    let mut groups = Vec::with_capacity(plan.groups);
    for i in 0..plan.groups {
        groups.push(if args.procs == 0 {
            Group::Local(client::start(plan.receivers(i, args), Arc::clone(&auth))?)
        } else {
            children::spawn_child(i, args, &plan, cfg)?
        });
    }
    let children: Vec<u32> = groups.iter().filter_map(Group::pid).collect();

    // Connect.
    let expected_time = plan.connections as f64 / args.connect_rate;
    let deadline = connect_start + Duration::from_secs_f64(expected_time * 2.0 + 30.0);
    let mut last_print = connect_start;
    loop {
        let [c, f, ..] = total(&groups);
        let now = std::time::Instant::now();
        let done = c + f >= plan.connections as u64;
        if done || now.duration_since(last_print) >= Duration::from_secs(1) {
            last_print = now;
            let secs = now.duration_since(connect_start).as_secs_f64();
            eprintln!(
                "connecting: {c}/{} connected, {f} failed, {:.0}/s",
                plan.connections,
                c as f64 / secs.max(1e-3)
            );
        }
        if done {
            break;
        }
        if now > deadline {
            eprintln!("connecting: giving up waiting for the remaining handshakes");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let connect_secs = connect_start.elapsed().as_secs_f64();
    let [connected_now, ..] = total(&groups);
    std::thread::sleep(Duration::from_secs(1));
    let rss_connected = rss_sum(&server_pids);

    // Publish.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let pub_progress = Arc::new(PublishProgress::default());
    let warmup = Duration::from_secs_f64(args.warmup);
    let (outcome, before, after, window, load_before, load_after) =
        local.block_on(&rt, async {
            let start = Instant::now() + Duration::from_millis(50);
            let publisher = tokio::task::spawn_local(publisher::run(
                plan.publish.clone(),
                start,
                Arc::clone(&pub_progress),
            ));
            let mut ticker = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tokio::time::sleep_until(start + warmup).await;
            let load_before = procfs::load_average();
            let before = cpu_snapshot(&server_pids, &children);
            let window_start = Instant::now();
            while !publisher.is_finished() {
                tokio::select! {
                    _ = ticker.tick() => {
                        let [.., d, r] = total(&groups);
                        eprintln!(
                            "running: {:.0} s, {} sent, {} publish errors, {} measured deliveries, {} disconnects",
                            start.elapsed().as_secs_f64(),
                            pub_progress.sent.load(Ordering::Relaxed),
                            pub_progress.errors.load(Ordering::Relaxed),
                            r, d
                        );
                    }
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
            let window = window_start.elapsed().as_secs_f64();
            let outcome = publisher.await.unwrap_or_default();
            // Drain: wait for the deliveries the server reported. A broadcast's receipt
            // counts the publishing node's connections only (cluster mode: each node
            // delivers on its own), so for broadcasts wait for every connection too.
            let drain_end = Instant::now() + Duration::from_secs_f64(args.drain);
            while Instant::now() < drain_end {
                let [connected, .., r] = total(&groups);
                let want = match plan.publish.users {
                    Some(_) => outcome.receipt_connections,
                    None => outcome.receipt_connections.max(connected * outcome.measured),
                };
                if r >= want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let after = cpu_snapshot(&server_pids, &children);
            (outcome, before, after, window, load_before, procfs::load_average())
        });

    // Collect.
    let mut hist = report::new_histogram();
    let mut conns_of_user = vec![0u64; plan.users];
    let mut recv_of_user = vec![0u64; plan.users];
    let mut recv = 0u64;
    let mut r = Report {
        scenario: args.scenario.as_str().into(),
        url: args.url.clone(),
        run_id: format!("{:08x}", plan.run),
        procs: args.procs,
        connections_requested: plan.connections as u64,
        users: plan.users as u64,
        connect_secs,
        connect_rate: connected_now as f64 / connect_secs.max(1e-3),
        payload_bytes: args.payload_bytes,
        warmup_secs: args.warmup,
        duration_secs: window,
        target_rate: 1.0 / plan.publish.period.as_secs_f64(),
        events_sent: outcome.measured,
        events_per_sec: outcome.measured as f64 / window.max(1e-3),
        publish_errors: outcome.errors,
        publish_error: outcome.first_error.clone(),
        publish_errors_503: outcome.errors_503,
        publish_error_first_unix_ms: outcome.first_error_unix_ms,
        publish_error_last_unix_ms: outcome.last_error_unix_ms,
        server_receipt_connections: outcome.receipt_connections,
        server_pid,
        server_pids: server_pids.clone(),
        load_before,
        load_after,
        ..Report::default()
    };
    for g in groups {
        let gr = g.finish().map_err(|e| anyhow!("receiver group: {e}"))?;
        let h = report::histogram_from_base64(&gr.histogram).map_err(|e| anyhow!(e))?;
        report::merge(&mut hist, &h).map_err(|e| anyhow!(e))?;
        r.connections += gr.connected;
        r.connect_failed += gr.failed;
        if r.connect_error.is_none() {
            r.connect_error = gr.first_error;
        }
        r.disconnects += gr.disconnects;
        r.leaks += gr.leaks;
        r.duplicates += gr.duplicates;
        r.stale += gr.stale;
        r.protocol_errors += gr.protocol_errors;
        r.resumes += gr.resumes;
        r.seq_holes += gr.seq_holes;
        r.reconnect_failures += gr.reconnect_failures;
        for (why, n) in gr.reconnect_failure_reasons {
            *r.reconnect_failure_reasons.entry(why).or_default() += n;
        }
        r.first_disconnect_unix_ms =
            min_some(r.first_disconnect_unix_ms, gr.first_disconnect_unix_ms);
        r.last_resume_unix_ms = r.last_resume_unix_ms.max(gr.last_resume_unix_ms);
        r.frame_bytes = r.frame_bytes.max(gr.frame_bytes);
        for [u, c, n] in gr.per_user {
            if let Some(slot) = conns_of_user.get_mut(u as usize) {
                *slot += c;
            }
            if let Some(slot) = recv_of_user.get_mut(u as usize) {
                *slot += n;
            }
            recv += n;
        }
    }
    // Loss and surplus per user, so that a user who got more than expected (an event whose
    // publish failed ambiguously, e.g. on a node killed mid-request, yet was stored) cannot
    // hide another user's loss.
    for (u, (&c, &got)) in conns_of_user.iter().zip(&recv_of_user).enumerate() {
        let n = match plan.publish.users {
            Some(_) => outcome.measured_per_target.get(u).copied().unwrap_or(0),
            None => outcome.measured,
        };
        let want = c * n;
        if got < want && r.loss_users.len() < 20 {
            r.loss_users.push([u as u64, c, want, got]);
        }
        r.deliveries_expected += want;
        r.loss += want.saturating_sub(got);
        r.extra_deliveries += got.saturating_sub(want);
    }
    r.deliveries_received = recv;
    r.latency = Latency::of(&hist);
    let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| round2(b - a));
    r.server_cpu_secs_per_pid = before
        .per_server
        .iter()
        .zip(&after.per_server)
        .map(|(&a, &b)| delta(a, b))
        .collect();
    // Summed over the pids alive at both ends (a node killed during the run drops out; its
    // entry in `server_cpu_secs_per_pid` is `null`).
    let alive: Vec<f64> = r
        .server_cpu_secs_per_pid
        .iter()
        .flatten()
        .copied()
        .collect();
    if !alive.is_empty() {
        let secs: f64 = alive.iter().sum();
        r.server_cpu_secs = Some(round2(secs));
        if recv > 0 {
            r.server_cpu_us_per_delivery = Some(round2(secs * 1e6 / recv as f64));
        }
    }
    r.client_cpu_secs = delta(before.client, after.client);
    r.server_cpu_wait_secs = delta(before.server_wait, after.server_wait);
    r.client_cpu_wait_secs = delta(before.client_wait, after.client_wait);
    if let Some(mut f) = plan.floor {
        if r.frame_bytes > 0 {
            f.write_bytes = r.frame_bytes as usize;
        }
        run_floor(&f, &mut r)?;
    }
    r.server_rss_kib_before = rss_before;
    r.server_rss_kib_connected = rss_connected;
    if let (Some(a), Some(b)) = (rss_before, rss_connected) {
        if r.connections > 0 {
            r.server_kib_per_connection =
                Some(round2((b as f64 - a as f64) / r.connections as f64));
        }
    }
    Ok(r)
}

/// `--floor`: measures the loopback floor of `f` (the reader is this binary, `bench
/// --floor-reader`) once the server has closed the run's connections, and puts it in `r`.
fn run_floor(f: &floor::FloorPlan, r: &mut Report) -> anyhow::Result<()> {
    std::thread::sleep(Duration::from_secs(1));
    eprintln!(
        "floor: {} sockets × {} + {} rounds every {:?}, {} B writes",
        f.connections, f.warmup_rounds, f.rounds, f.interval, f.write_bytes
    );
    let exe = std::env::current_exe().context("locating the agentcast binary")?;
    let report = floor::measure(f, |addr, n| {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "bench",
            "--floor-reader",
            addr,
            "--connections",
            &n.to_string(),
        ]);
        cmd
    })?;
    if let Some(cpu) = r.server_cpu_us_per_delivery {
        if report.sender_us_per_write > 0.0 {
            r.server_cpu_per_delivery_over_floor = Some(round2(cpu / report.sender_us_per_write));
        }
    }
    r.floor = Some(report);
    Ok(())
}

/// The smaller of two optional values, ignoring `None`.
fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `x` rounded to 2 decimals (CPU times have 10 ms resolution anyway).
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
