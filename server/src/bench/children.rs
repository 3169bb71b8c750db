//! Receiver groups: the connections live either on a thread of this process or in child
//! processes of the same binary (`agentcast bench --child-index i ...`).
//!
//! A child prints `progress <connected> <failed> <disconnects> <received>` every 250 ms and,
//! once the parent writes a line (or closes) on its stdin, one `report <json>` line with its
//! [`GroupReport`] (the histogram as hdrhistogram V2 in base64), then exits.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow};

use super::client::{self, Progress, ReceiverHandle};
use super::plan::{BenchArgs, Plan};
use super::report::GroupReport;
use crate::auth::Authenticator;
use crate::config::Config;

/// A receiver group: in this process, or a child process.
pub(crate) enum Group {
    Local(ReceiverHandle),
    Child {
        child: std::process::Child,
        progress: Arc<Progress>,
        report: Arc<Mutex<Option<Result<GroupReport, String>>>>,
        reader: std::thread::JoinHandle<()>,
    },
}

impl Group {
    pub(crate) fn progress(&self) -> &Progress {
        match self {
            Group::Local(h) => &h.progress,
            Group::Child { progress, .. } => progress,
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Group::Local(_) => None,
            Group::Child { child, .. } => Some(child.id()),
        }
    }

    pub(crate) fn finish(self) -> Result<GroupReport, String> {
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
pub(crate) fn spawn_child(
    i: usize,
    args: &BenchArgs,
    plan: &Plan,
    cfg: &Config,
) -> anyhow::Result<Group> {
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
        .args(args.reconnect.then_some("--reconnect"))
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
pub(crate) fn child_main(i: usize, args: &BenchArgs, cfg: &Config) -> anyhow::Result<()> {
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
