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
//! `broadcast` sends one `{"broadcast": true}` event every `--interval-ms`.
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
//! CPU times → collect the receivers' counts → print the table, write `--json`.
//!
//! The exit status is 0 when every connection connected and every measured event reached
//! every device it was meant for, once, with no leak and no publish error; 1 otherwise; 2 for
//! flags that do not make a valid plan.
//!
//! # Layout
//!
//! - [`payload`]: the probe in each event's `data` and its cheap parse;
//! - [`client`]: the minimal WebSocket client and the receiver groups;
//! - [`publisher`]: the minimal HTTP publisher and its schedule;
//! - [`report`]: histograms, the report, the table;
//! - [`procfs`]: CPU, memory, pid lookup from `/proc`.

pub mod client;
pub mod payload;
pub mod procfs;
pub mod publisher;
pub mod report;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::{Args, ValueEnum};
use tokio::time::Instant;

use crate::auth::Authenticator;
use crate::config::Config;
use client::{Progress, ReceiverHandle, ReceiverPlan};
use publisher::{PublishPlan, PublishProgress};
use report::{GroupReport, Latency, Report};

/// What is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `--rate` events per second, each to one user drawn at random; every device of that
    /// user must receive it.
    PerUser,
    /// One broadcast every `--interval-ms`; every connection must receive it.
    Broadcast,
}

impl Scenario {
    fn as_str(self) -> &'static str {
        match self {
            Scenario::PerUser => "per-user",
            Scenario::Broadcast => "broadcast",
        }
    }
}

/// `agentcast bench`. The server's `--jwt-secret` (to mint a token per simulated user) and
/// `--api-key` (to publish) are the global flags of the same names (or `AGENTCAST_JWT_SECRET`
/// and `AGENTCAST_API_KEY`).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Server base URL: `http://host:port` (or `ws://`; no TLS).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// WebSocket connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Distinct users; each has connections / users devices (default: one per connection).
    #[arg(long)]
    pub users: Option<usize>,
    /// What to publish.
    #[arg(long, value_enum, default_value_t = Scenario::PerUser)]
    pub scenario: Scenario,
    /// Events per second (per-user scenario).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Milliseconds between two broadcasts (broadcast scenario).
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Size of each event's `data` JSON, bytes (at least 128).
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up before the window, seconds (events sent, not measured).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Child processes holding the connections (0: this process), each bound to source
    /// address 127.0.0.(2+i) when the server is on loopback.
    #[arg(long, default_value_t = 0)]
    pub procs: usize,
    /// Most new connections per second, over all processes.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Concurrent keep-alive HTTP connections publishing (a broadcast that is still being
    /// answered does not delay the next one).
    #[arg(long, default_value_t = 8)]
    pub publishers: usize,
    /// After publishing, wait at most this many seconds for in-flight deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// The server's pid, for its CPU time and memory (default: the process listening on the
    /// URL's port, found through /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Internal: run as receiver child `i` of a parent bench.
    #[arg(long, hide = true)]
    pub child_index: Option<usize>,
    /// Internal: the parent's run id (hex).
    #[arg(long, hide = true)]
    pub run_id: Option<String>,
}

/// Validated settings of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server.
    pub addr: SocketAddr,
    /// Its `Host` header.
    pub host: String,
    /// Connections.
    pub connections: usize,
    /// Users.
    pub users: usize,
    /// Receiver groups: `procs`, or 1 in-process.
    pub groups: usize,
    /// Run id.
    pub run: u32,
    /// The publish API key.
    pub api_key: String,
    /// Publishing schedule.
    pub publish: PublishPlan,
}

impl Plan {
    /// Checks `args` against each other and the configuration. Every refusal says which flag
    /// to fix.
    pub fn new(args: &BenchArgs, cfg: &Config) -> Result<Plan, String> {
        let (addr, host) = parse_url(&args.url)?;
        let n = args.connections;
        if n == 0 {
            return Err("--connections must be at least 1".into());
        }
        let users = args.users.unwrap_or(n);
        if users == 0 || users > n || n % users != 0 {
            return Err(format!(
                "--users must divide --connections ({n}) so every user has the same number of devices"
            ));
        }
        if u32::try_from(users).is_err() {
            return Err("--users is too large".into());
        }
        let secs = |v: f64, name: &str, min: f64| {
            if v.is_finite() && v >= min && v <= 86_400.0 {
                Ok(v)
            } else {
                Err(format!(
                    "--{name} must be a number of seconds in [{min}, 86400]"
                ))
            }
        };
        let duration = secs(args.duration, "duration", 0.1)?;
        let warmup = secs(args.warmup, "warmup", 0.0)?;
        secs(args.drain, "drain", 0.0)?;
        if !(args.payload_bytes >= payload::MIN_PAYLOAD_BYTES && args.payload_bytes <= 512 * 1024) {
            return Err(format!(
                "--payload-bytes must be in [{}, 524288]",
                payload::MIN_PAYLOAD_BYTES
            ));
        }
        if args.procs > 253 {
            return Err("--procs must be at most 253 (source addresses 127.0.0.2..=254)".into());
        }
        if !(args.connect_rate.is_finite() && args.connect_rate >= 1.0) {
            return Err("--connect-rate must be at least 1".into());
        }
        if !(1..=256).contains(&args.publishers) {
            return Err("--publishers must be in [1, 256]".into());
        }
        let (period, users_opt) = match args.scenario {
            Scenario::PerUser => {
                if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1e6) {
                    return Err("--rate must be in (0, 1000000] events/s".into());
                }
                (Duration::from_secs_f64(1.0 / args.rate), Some(users))
            }
            Scenario::Broadcast => {
                if args.interval_ms == 0 {
                    return Err("--interval-ms must be at least 1".into());
                }
                (Duration::from_millis(args.interval_ms), None)
            }
        };
        let groups = args.procs.max(1);
        if let Some(limit) = procfs::open_files_limit() {
            let per_group = n.div_ceil(groups) as u64;
            if per_group + 64 > limit {
                return Err(format!(
                    "{per_group} connections per process exceed the open-files limit of {limit}: \
                     use --procs {} or more",
                    (n as u64).div_ceil(limit.saturating_sub(64).max(1))
                ));
            }
        }
        let api_key = cfg
            .api_key
            .clone()
            .ok_or("the server's publish key is needed: --api-key or AGENTCAST_API_KEY")?;
        if cfg.jwt_secret.is_none() {
            return Err(
                "the server's HS256 secret is needed to mint tokens: --jwt-secret or AGENTCAST_JWT_SECRET"
                    .into(),
            );
        }
        let run = match &args.run_id {
            Some(r) => u32::from_str_radix(r, 16).map_err(|_| "--run-id must be hex")?,
            None => rand::random(),
        };
        let per_sec = 1.0 / period.as_secs_f64();
        Ok(Plan {
            publish: PublishPlan {
                addr,
                host: host.clone(),
                api_key: api_key.clone(),
                run,
                users: users_opt,
                period,
                warmup_events: (warmup * per_sec).round() as u64,
                measured_events: ((duration * per_sec).round() as u64).max(1),
                payload_bytes: args.payload_bytes,
                connections: args.publishers,
            },
            addr,
            host,
            connections: n,
            users,
            groups,
            run,
            api_key,
        })
    }

    /// The receivers of group `i`: an even share of the connections and of the connect rate,
    /// bound to 127.0.0.(2+i) when children talk to a loopback IPv4 server.
    pub fn receivers(&self, i: usize, args: &BenchArgs) -> ReceiverPlan {
        let first = self.connections * i / self.groups;
        let end = self.connections * (i + 1) / self.groups;
        let source_ip = match self.addr.ip() {
            IpAddr::V4(ip) if args.procs > 0 && ip.is_loopback() => {
                Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
            }
            _ => None,
        };
        ReceiverPlan {
            addr: self.addr,
            host: self.host.clone(),
            source_ip,
            first,
            count: end - first,
            users: self.users,
            run: self.run,
            connect_rate: args.connect_rate / self.groups as f64,
        }
    }
}

/// `(socket address, Host header)` of an `http://` or `ws://` base URL.
fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "ws") => {}
        Some(s) => {
            return Err(format!(
                "--url: scheme {s} is not supported (use http:// or ws://)"
            ));
        }
        None => return Err("--url needs a scheme, e.g. http://127.0.0.1:8080".into()),
    }
    let host = uri.host().ok_or("--url needs a host")?;
    let port = uri.port_u16().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("--url: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("--url: {host} has no address"))?;
    Ok((addr, format!("{host}:{port}")))
}

/// Parses a whole command line (`agentcast [global flags] bench [flags]`) as the binary does,
/// and loads the configuration it names: for embedding the bench, and for tests.
pub fn parse_command_line<I, T>(argv: I) -> Result<(BenchArgs, Config), String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser as _;
    let cli = crate::cli::Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let cfg = Config::load(&cli.overrides).map_err(|e| e.to_string())?;
    match cli.command {
        Some(crate::cli::Command::Bench(b)) => Ok((b, cfg)),
        _ => Err("not a bench command line".into()),
    }
}

/// The `bench` subcommand: runs, prints the table, writes the JSON, and exits 0 only for a
/// clean run (see the [module docs](self)).
pub fn main(args: &BenchArgs, cfg: &Config) -> anyhow::Result<ExitCode> {
    if let Some(i) = args.child_index {
        return child_main(i, args, cfg).map(|()| ExitCode::SUCCESS);
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

/// A receiver group: in this process, or a child process.
enum Group {
    Local(ReceiverHandle),
    Child {
        child: std::process::Child,
        progress: Arc<Progress>,
        report: Arc<Mutex<Option<Result<GroupReport, String>>>>,
        reader: std::thread::JoinHandle<()>,
    },
}

impl Group {
    fn progress(&self) -> &Progress {
        match self {
            Group::Local(h) => &h.progress,
            Group::Child { progress, .. } => progress,
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Group::Local(_) => None,
            Group::Child { child, .. } => Some(child.id()),
        }
    }

    fn finish(self) -> Result<GroupReport, String> {
        match self {
            Group::Local(h) => h.finish(),
            Group::Child {
                mut child,
                report,
                reader,
                ..
            } => {
                if let Some(stdin) = child.stdin.as_mut() {
                    let _ = stdin.write_all(b"finish\n");
                    let _ = stdin.flush();
                }
                let _ = reader.join();
                let _ = child.wait();
                report
                    .lock()
                    .map_err(|_| "report lock poisoned".to_owned())?
                    .take()
                    .unwrap_or_else(|| Err("child exited without a report".into()))
            }
        }
    }
}

/// Spawns child `i`: the same binary, `bench --child-index i`, the secret passed by env.
fn spawn_child(i: usize, args: &BenchArgs, plan: &Plan, cfg: &Config) -> anyhow::Result<Group> {
    let exe = std::env::current_exe().context("locating the agentcast binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("bench")
        .args(["--child-index", &i.to_string()])
        .args(["--run-id", &format!("{:08x}", plan.run)])
        .args(["--url", &args.url])
        .args(["--connections", &plan.connections.to_string()])
        .args(["--users", &plan.users.to_string()])
        .args(["--procs", &args.procs.to_string()])
        .args(["--connect-rate", &args.connect_rate.to_string()])
        .args(["--scenario", args.scenario.as_str()])
        .env("AGENTCAST_API_KEY", &plan.api_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let envs = [
        ("AGENTCAST_JWT_SECRET", &cfg.jwt_secret),
        ("AGENTCAST_JWT_AUDIENCE", &cfg.jwt_audience),
        ("AGENTCAST_JWT_ISSUER", &cfg.jwt_issuer),
    ];
    for (k, v) in envs {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().context("spawning a bench child")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("child has no stdout"))?;
    let progress = Arc::new(Progress::default());
    let report = Arc::new(Mutex::new(None));
    let (p, r) = (Arc::clone(&progress), Arc::clone(&report));
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("progress ") {
                let v: Vec<u64> = rest.split(' ').filter_map(|x| x.parse().ok()).collect();
                if let [c, f, d, rcv] = v[..] {
                    p.connected.store(c, Ordering::Relaxed);
                    p.failed.store(f, Ordering::Relaxed);
                    p.disconnects.store(d, Ordering::Relaxed);
                    p.received.store(rcv, Ordering::Relaxed);
                }
            } else if let Some(json) = line.strip_prefix("report ") {
                let parsed = serde_json::from_str::<GroupReport>(json).map_err(|e| e.to_string());
                if let Ok(mut slot) = r.lock() {
                    *slot = Some(parsed);
                }
            }
        }
    });
    Ok(Group::Child {
        child,
        progress,
        report,
        reader,
    })
}

/// A child: runs its receiver group, prints progress every 250 ms, and its report once the
/// parent writes `finish` (or closes stdin).
fn child_main(i: usize, args: &BenchArgs, cfg: &Config) -> anyhow::Result<()> {
    let plan = Plan::new(args, cfg).map_err(|e| anyhow!(e))?;
    let auth = Arc::new(Authenticator::from_config(cfg)?);
    let handle = client::start(plan.receivers(i, args), auth)?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        // Any line, or EOF, means finish.
        let _ = std::io::stdin().read_line(&mut line);
        let _ = tx.send(());
    });
    let mut out = std::io::stdout().lock();
    loop {
        let [c, f, d, r] = handle.progress.snapshot();
        writeln!(out, "progress {c} {f} {d} {r}")?;
        out.flush()?;
        match rx.recv_timeout(Duration::from_millis(250)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    let report = handle.finish().map_err(|e| anyhow!(e))?;
    writeln!(out, "report {}", serde_json::to_string(&report)?)?;
    out.flush()?;
    Ok(())
}

/// CPU seconds of the server and of the load generator (this process and its children).
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    server: Option<f64>,
    client: Option<f64>,
    server_wait: Option<f64>,
    client_wait: Option<f64>,
}

fn cpu_snapshot(server_pid: Option<u32>, children: &[u32]) -> CpuSnapshot {
    let sum = |f: fn(u32) -> Option<f64>| {
        let mut total = f(std::process::id());
        for &pid in children {
            total = match (total, f(pid)) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        total
    };
    CpuSnapshot {
        server: server_pid.and_then(procfs::cpu_secs),
        client: sum(procfs::cpu_secs),
        server_wait: server_pid.and_then(procfs::run_queue_wait_secs),
        client_wait: sum(procfs::run_queue_wait_secs),
    }
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
    let plan = Plan::new(args, cfg).map_err(|e| anyhow!(e))?;
    let auth = Arc::new(Authenticator::from_config(cfg)?);
    let server_pid = args
        .server_pid
        .or_else(|| procfs::listening_pid(plan.addr.port()));
    let rss_before = server_pid.and_then(procfs::rss_kib);
    eprintln!(
        "bench {}: {} connections, {} users, {} scenario, run {:08x}, server pid {}",
        args.url,
        plan.connections,
        plan.users,
        args.scenario.as_str(),
        plan.run,
        server_pid.map_or("unknown".into(), |p| p.to_string())
    );
    let connect_start = std::time::Instant::now();
    let mut groups = Vec::with_capacity(plan.groups);
    for i in 0..plan.groups {
        groups.push(if args.procs == 0 {
            Group::Local(client::start(plan.receivers(i, args), Arc::clone(&auth))?)
        } else {
            spawn_child(i, args, &plan, cfg)?
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
    let rss_connected = server_pid.and_then(procfs::rss_kib);

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
            let before = cpu_snapshot(server_pid, &children);
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
            // Drain: wait for the deliveries the server reported.
            let drain_end = Instant::now() + Duration::from_secs_f64(args.drain);
            while Instant::now() < drain_end {
                let [.., r] = total(&groups);
                if r >= outcome.receipt_connections {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let after = cpu_snapshot(server_pid, &children);
            (outcome, before, after, window, load_before, procfs::load_average())
        });

    // Collect.
    let mut hist = report::new_histogram();
    let mut conns_of_user = vec![0u64; plan.users];
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
        server_receipt_connections: outcome.receipt_connections,
        server_pid,
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
        for [u, c, n] in gr.per_user {
            if let Some(slot) = conns_of_user.get_mut(u as usize) {
                *slot += c;
            }
            recv += n;
        }
    }
    r.deliveries_expected = match plan.publish.users {
        Some(_) => conns_of_user
            .iter()
            .zip(&outcome.measured_per_target)
            .map(|(c, n)| c * n)
            .sum(),
        None => conns_of_user.iter().sum::<u64>() * outcome.measured,
    };
    r.deliveries_received = recv;
    r.loss = r.deliveries_expected.saturating_sub(recv);
    r.latency = Latency::of(&hist);
    if let (Some(a), Some(b)) = (before.server, after.server) {
        r.server_cpu_secs = Some(round2(b - a));
        if recv > 0 {
            r.server_cpu_us_per_delivery = Some(round2((b - a) * 1e6 / recv as f64));
        }
    }
    let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| round2(b - a));
    r.client_cpu_secs = delta(before.client, after.client);
    r.server_cpu_wait_secs = delta(before.server_wait, after.server_wait);
    r.client_cpu_wait_secs = delta(before.client_wait, after.client_wait);
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

/// `x` rounded to 2 decimals (CPU times have 10 ms resolution anyway).
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    fn parse(extra: &[&str]) -> (BenchArgs, Config) {
        let mut argv = vec!["agentcast", "--jwt-secret", "s", "--api-key", "k", "bench"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).unwrap();
        let mut cfg = Config::default();
        cfg.apply(&cli.overrides);
        match cli.command {
            Some(Command::Bench(b)) => (b, cfg),
            other => panic!("{other:?}"),
        }
    }

    fn plan(extra: &[&str]) -> Result<Plan, String> {
        let (a, c) = parse(extra);
        Plan::new(&a, &c)
    }

    #[test]
    fn defaults_make_a_valid_plan() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(p.users, 1000);
        assert_eq!(p.groups, 1);
        assert_eq!(p.publish.warmup_events, 2000);
        assert_eq!(p.publish.measured_events, 10_000);
    }

    #[test]
    fn bad_flags_name_themselves() {
        for (flags, needle) in [
            (&["--connections", "0"][..], "--connections"),
            (&["--connections", "10", "--users", "3"], "--users"),
            (&["--connections", "10", "--users", "11"], "--users"),
            (&["--rate", "0"], "--rate"),
            (
                &["--scenario", "broadcast", "--interval-ms", "0"],
                "--interval-ms",
            ),
            (&["--payload-bytes", "10"], "--payload-bytes"),
            (&["--duration", "0"], "--duration"),
            (&["--procs", "300"], "--procs"),
            (&["--url", "https://x:1"], "https"),
            (&["--url", "nope"], "--url"),
            (&["--connect-rate", "0"], "--connect-rate"),
        ] {
            let err = plan(flags).unwrap_err();
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
    }

    #[test]
    fn keys_are_required() {
        let cli = Cli::try_parse_from(["agentcast", "bench"]).unwrap();
        let Some(Command::Bench(b)) = cli.command else {
            panic!()
        };
        let err = Plan::new(&b, &Config::default()).unwrap_err();
        assert!(err.contains("--api-key"), "{err}");
    }

    #[test]
    fn groups_split_connections_and_source_addresses() {
        let (a, c) = parse(&["--connections", "15000", "--users", "7500", "--procs", "2"]);
        let p = Plan::new(&a, &c).unwrap();
        let g0 = p.receivers(0, &a);
        let g1 = p.receivers(1, &a);
        assert_eq!(
            (g0.first, g0.count, g1.first, g1.count),
            (0, 7500, 7500, 7500)
        );
        assert_eq!(g0.source_ip, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(g1.source_ip, Some("127.0.0.3".parse().unwrap()));
        assert_eq!(g1.connect_rate, 1000.0);
        let (a, c) = parse(&["--connections", "10"]);
        assert_eq!(Plan::new(&a, &c).unwrap().receivers(0, &a).source_ip, None);
    }

    #[test]
    fn broadcast_schedule_follows_the_interval() {
        let p = plan(&[
            "--scenario",
            "broadcast",
            "--interval-ms",
            "100",
            "--duration",
            "30",
            "--warmup",
            "1",
        ])
        .unwrap();
        assert_eq!(p.publish.users, None);
        assert_eq!(p.publish.measured_events, 300);
        assert_eq!(p.publish.warmup_events, 10);
    }
}
