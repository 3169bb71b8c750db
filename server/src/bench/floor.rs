//! The loopback floor: what one thread pays, in CPU, to write one small message to each of N
//! loopback TCP sockets with a plain non-blocking `write`, with nothing else (no WebSocket,
//! no engine, no async runtime on the sending side). It is the least a server can spend per
//! broadcast delivery on this machine, so `agentcast bench --floor` prints it next to the
//! server's CPU per delivery, and `benches/examples/loopback_floor.rs` runs it alone.
//!
//! # Sender
//!
//! The calling thread: it listens on `127.0.0.1:0`, re-executes a reader process (the caller
//! says how: [`measure`]'s `reader` builds its command line, which must end up calling
//! [`reader_main`]), accepts its N connections, waits 500 ms, then writes `warmup_rounds` +
//! `rounds` rounds, one `write` of `write_bytes` per socket per round, round `r` starting at
//! `start + r × interval` (or as soon as the previous round ends, when it runs late). A write
//! that is short or would block counts in `short_writes` and the socket moves on. The
//! sender's CPU is this thread's (`/proc/thread-self/stat`), read before and after the
//! measured rounds; it includes the receiving socket's TCP input, which loopback runs in the
//! sender's context, as it does for a server.
//!
//! # Reader
//!
//! The same kind of reader as `agentcast bench`'s receivers ([`super::client`]): one thread,
//! one current-thread tokio runtime and a `LocalSet`, one task per socket that awaits
//! `TcpStream::readable()` (tokio's epoll reactor) and then does one `try_read` into a 16 KiB
//! stack buffer, until EOF. It only counts bytes (no frame decode: that costs the reader,
//! not the sender). Its CPU is read by the sender from `/proc/<pid>/stat` at the same two
//! instants as the sender's. When every socket is at EOF it prints `bytes <n>` on stdout and
//! exits.
//!
//! # Bounds
//!
//! Each process holds all N sockets: N + 64 must fit the open-files limit (20,000 on the
//! project's machine, so N ≤ 19,936). The reader has 60 s to connect everything and 30 s
//! after the last round to report, or it is killed and the measurement fails.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::procfs;

/// How long the reader may take to connect every socket.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// How long the reader may take to report after the sender closed its sockets.
const REPORT_DEADLINE: Duration = Duration::from_secs(30);
/// Descriptors each process keeps beside the sockets (std streams, listener, epoll, ...).
const SPARE_FDS: u64 = 64;

/// One floor measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorPlan {
    /// Sockets (N).
    pub connections: usize,
    /// Unmeasured rounds first.
    pub warmup_rounds: u64,
    /// Measured rounds.
    pub rounds: u64,
    /// Time between the starts of two rounds.
    pub interval: Duration,
    /// Bytes of each write.
    pub write_bytes: usize,
}

impl FloorPlan {
    /// Refuses a plan whose N sockets do not fit this process's open-files limit (the
    /// reader, a child, has the same limit).
    pub fn check(&self) -> Result<(), String> {
        if self.connections == 0 || self.rounds == 0 || self.write_bytes == 0 {
            return Err("the floor needs at least 1 socket, 1 round and 1 byte".into());
        }
        if let Some(limit) = procfs::open_files_limit() {
            if self.connections as u64 + SPARE_FDS > limit {
                return Err(format!(
                    "the floor holds all {} sockets in one process (and {} in its reader): \
                     the open-files limit of {limit} allows at most {}",
                    self.connections,
                    self.connections,
                    limit.saturating_sub(SPARE_FDS)
                ));
            }
        }
        Ok(())
    }
}

/// What a floor measurement found (part of `agentcast bench --floor`'s JSON report).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FloorReport {
    /// Sockets.
    pub connections: u64,
    /// Unmeasured rounds.
    pub warmup_rounds: u64,
    /// Measured rounds.
    pub rounds: u64,
    /// Milliseconds between two rounds.
    pub interval_ms: f64,
    /// Bytes of each write.
    pub write_bytes: u64,
    /// Wall time of the measured rounds, seconds.
    pub secs: f64,
    /// Writes attempted in the measured rounds (connections × rounds).
    pub writes: u64,
    /// Of those, writes that were short or would block.
    pub short_writes: u64,
    /// The sender thread's user CPU over the measured rounds, seconds.
    pub sender_user_secs: f64,
    /// Its system CPU, seconds.
    pub sender_sys_secs: f64,
    /// (user + system) / writes, microseconds: **the floor**.
    pub sender_us_per_write: f64,
    /// The reader process's CPU over the measured rounds, seconds (`None`: unreadable).
    pub reader_cpu_secs: Option<f64>,
    /// Bytes written over all rounds.
    pub bytes_written: u64,
    /// Bytes the reader read (equal to `bytes_written` when nothing was lost).
    pub bytes_read: u64,
}

impl FloorReport {
    /// One line: the figure and how it was made.
    pub fn line(&self) -> String {
        format!(
            "{:.2} µs sender CPU per write ({} sockets × {} rounds every {:.0} ms, {} B writes, \
             user {:.2} s + sys {:.2} s, {} short); reader {} s CPU",
            self.sender_us_per_write,
            self.connections,
            self.rounds,
            self.interval_ms,
            self.write_bytes,
            self.sender_user_secs,
            self.sender_sys_secs,
            self.short_writes,
            self.reader_cpu_secs
                .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
        )
    }
}

/// Kills the reader if the measurement ends early.
struct Reader(std::process::Child);

impl Drop for Reader {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Measures the floor (see the [module docs](self)) on the calling thread. `reader(addr, n)`
/// returns the command that runs [`reader_main`]`(addr, n)` in another process.
pub fn measure(
    plan: &FloorPlan,
    reader: impl FnOnce(&str, usize) -> Command,
) -> anyhow::Result<FloorReport> {
    plan.check().map_err(|e| anyhow!(e))?;
    let listener = TcpListener::bind("127.0.0.1:0").context("floor: binding the listener")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?.to_string();
    let mut child = Reader(
        reader(&addr, plan.connections)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("floor: spawning the reader")?,
    );
    let child_pid = child.0.id();
    let stdout = child
        .0
        .stdout
        .take()
        .ok_or_else(|| anyhow!("floor: the reader has no stdout"))?;

    let mut socks = Vec::with_capacity(plan.connections);
    let deadline = Instant::now() + CONNECT_DEADLINE;
    while socks.len() < plan.connections {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                socks.push(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.0.try_wait()? {
                    bail!("floor: the reader exited ({status}) before connecting");
                }
                if Instant::now() > deadline {
                    bail!(
                        "floor: the reader connected {} of {} sockets in {CONNECT_DEADLINE:?}",
                        socks.len(),
                        plan.connections
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e).context("floor: accepting"),
        }
    }
    drop(listener);
    std::thread::sleep(Duration::from_millis(500));

    let msg = vec![b'x'; plan.write_bytes];
    let mut bytes_written = 0u64;
    let mut round = |socks: &mut [TcpStream]| {
        let mut short = 0u64;
        for s in socks {
            match s.write(&msg) {
                Ok(n) => {
                    bytes_written += n as u64;
                    short += u64::from(n < msg.len());
                }
                Err(_) => short += 1,
            }
        }
        short
    };
    let start = Instant::now();
    let pace = |r: u64| {
        let due = start + plan.interval * u32::try_from(r).unwrap_or(u32::MAX);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    };
    for r in 0..plan.warmup_rounds {
        pace(r);
        round(&mut socks);
    }
    pace(plan.warmup_rounds);
    let (u0, s0) = procfs::thread_user_sys_secs().ok_or_else(|| anyhow!("floor: no procfs"))?;
    let reader0 = procfs::cpu_secs(child_pid);
    let t0 = Instant::now();
    let mut short_writes = 0;
    for r in 0..plan.rounds {
        pace(plan.warmup_rounds + r);
        short_writes += round(&mut socks);
    }
    let secs = t0.elapsed().as_secs_f64();
    let (u1, s1) = procfs::thread_user_sys_secs().ok_or_else(|| anyhow!("floor: no procfs"))?;
    let reader1 = procfs::cpu_secs(child_pid);
    drop(socks);

    // The reader prints `bytes <n>` once every socket is at EOF.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let n = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("bytes ").and_then(|n| n.parse::<u64>().ok()));
        let _ = tx.send(n);
    });
    let bytes_read = match rx.recv_timeout(REPORT_DEADLINE) {
        Ok(Some(n)) => n,
        Ok(None) => bail!("floor: the reader exited without reporting"),
        Err(_) => bail!("floor: the reader did not report within {REPORT_DEADLINE:?}"),
    };
    drop(child);

    let writes = plan.connections as u64 * plan.rounds;
    let (user, sys) = (u1 - u0, s1 - s0);
    Ok(FloorReport {
        connections: plan.connections as u64,
        warmup_rounds: plan.warmup_rounds,
        rounds: plan.rounds,
        interval_ms: plan.interval.as_secs_f64() * 1e3,
        write_bytes: plan.write_bytes as u64,
        secs,
        writes,
        short_writes,
        sender_user_secs: round2(user),
        sender_sys_secs: round2(sys),
        sender_us_per_write: round2((user + sys) * 1e6 / writes as f64),
        reader_cpu_secs: reader0.zip(reader1).map(|(a, b)| round2(b - a)),
        bytes_written,
        bytes_read,
    })
}

/// The reader process (see the [module docs](self)): connects `n` sockets to `addr`, reads
/// them on one current-thread tokio runtime until every one is at EOF, prints `bytes <n>`.
pub fn reader_main(addr: &str, n: usize) -> anyhow::Result<()> {
    let addr: SocketAddr = addr.parse().context("floor reader: address")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let total = local.block_on(&rt, async move {
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n {
            let s = tokio::net::TcpStream::connect(addr)
                .await
                .context("floor reader: connecting")?;
            streams.push(s);
        }
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|s| tokio::task::spawn_local(read_to_eof(s)))
            .collect();
        let mut total = 0u64;
        for t in tasks {
            total += t.await.unwrap_or(0);
        }
        anyhow::Ok(total)
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "bytes {total}")?;
    out.flush()?;
    Ok(())
}

/// Reads `s` as the bench's receivers read theirs: await readiness, one `try_read` into a
/// 16 KiB stack buffer, until EOF or an error. Returns the bytes read.
async fn read_to_eof(s: tokio::net::TcpStream) -> u64 {
    let mut got = 0u64;
    let mut buf = [0u8; 16 * 1024];
    loop {
        if s.readable().await.is_err() {
            return got;
        }
        match s.try_read(&mut buf) {
            Ok(0) => return got,
            Ok(k) => got += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return got,
        }
    }
}

/// `x` rounded to 2 decimals.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
