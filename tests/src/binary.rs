//! The real `agentcast` binary as a child process, for tests of what only the binary does:
//! signal handling, dev-mode entry, exit codes, environment and flag precedence.
//!
//! The tests crate cannot name another package's binary, so these tests live in
//! `server/tests/` (where Cargo builds the binary and sets `CARGO_BIN_EXE_agentcast`) and pass
//! its path to [`BinaryServer::spawn`]. The child's `AGENTCAST_*` and `RUST_LOG` variables are
//! cleared, so only what a test passes reaches it. Its stderr (the log) is collected line by
//! line; [`BinaryServer::spawn`] waits for the `agentcast listening` line to learn the port
//! when the test listens on `127.0.0.1:0`.
//!
//! Every wait is bounded; a child still running when its `BinaryServer` is dropped is killed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::TestServer;

/// A running `agentcast` process.
pub struct BinaryServer {
    /// Where it listens (from its `agentcast listening` log line).
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl BinaryServer {
    /// Starts `bin` with `args` and `envs`, and waits (at most 20 s) until it logs the address
    /// it listens on. Panics, with the log so far, if it exits or never listens.
    pub fn spawn(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> BinaryServer {
        let (mut child, log) = start(bin, args, envs);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = log
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| listening_addr(&strip_ansi(l)));
            if let Some(addr) = found {
                return BinaryServer { addr, child, log };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "agentcast exited with {status} before listening:\n{}",
                    join(&log)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agentcast did not listen within 20 s:\n{}", join(&log));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `bin` to completion (at most 20 s) and returns its exit status, stdout and stderr.
    pub fn run_to_exit(
        bin: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> (ExitStatus, String, String) {
        let mut cmd = command(bin, args, envs);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn agentcast");
        let out = wait_output(child, Duration::from_secs(20));
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A client handle (publish, connect, HTTP) to this process.
    pub fn api(&self) -> TestServer {
        TestServer::remote(self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Kills it with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits at most `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("agentcast did not exit within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it wrote to stderr so far, ANSI escapes removed.
    pub fn log(&self) -> String {
        strip_ansi(&join(&self.log))
    }

    /// Everything it wrote to stderr so far, exactly as written (ANSI escapes kept).
    pub fn log_raw(&self) -> String {
        join(&self.log)
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn command(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("AGENTCAST_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null());
    cmd
}

fn start(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut cmd = command(bin, args, envs);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn agentcast");
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    (child, log)
}

fn wait_output(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("agentcast did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn join(log: &Mutex<Vec<String>>) -> String {
    log.lock().unwrap().join("\n")
}

/// `addr=127.0.0.1:1234` from the `agentcast listening` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("agentcast listening") {
        return None;
    }
    let at = line.find("addr=")? + "addr=".len();
    let rest = &line[at..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].trim_matches('"').parse().ok()
}

/// `s` without ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
