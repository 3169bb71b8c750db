//! The receiving side of the load generator: a group of WebSocket connections on one thread.
//!
//! # Client
//!
//! A minimal RFC 6455 client rather than tungstenite: the handshake is one request and one
//! response head, and the server only sends unfragmented, unmasked frames, so receiving is a
//! header decode (`frame_header`) and a slice. Per connection it keeps a tokio task (a few
//! hundred bytes), the socket, and a `pending` buffer that is empty (unallocated) except while
//! a frame is split across reads. Reads go through a 16 KiB stack buffer. Pings are answered
//! with a masked pong (the server's idle timeout would otherwise close idle connections).
//!
//! # Counting
//!
//! Every text frame goes through [`parse_event`]. A bench event of this run whose target user
//! is not the connection's user is a **leak**. An event whose server `seq` (per user) is not
//! above the last one this connection saw, or a broadcast whose publisher sequence is not,
//! is a **duplicate**. Every other measured event counts as received for the connection's
//! user and its latency (`now - t`, both `CLOCK_REALTIME`) goes into the histogram.
//!
//! # Threads
//!
//! One thread, one current-thread tokio runtime and a `LocalSet`, so the counters are plain
//! `Rc<RefCell<_>>` fields; only [`Progress`] is atomic, for the thread that reports progress.
//! A connection the server closes, or whose frames do not decode, ends and is counted.
//!
//! # Reconnecting (`--reconnect`)
//!
//! With [`ReceiverPlan::reconnect`], a connection that closes (the server went away, or
//! closed it) is counted as a disconnect and reconnects after a full-jitter backoff (uniform
//! in `[0, min(2 s, 50 ms × 2^attempt)]`) with `?last_seq=<the last seq it saw>`; the server
//! replays what it missed, and the connection keeps its seq and broadcast windows, so a
//! replayed event it already had is a duplicate and loss stays exact. The connection still
//! counts once in its user's devices. Each completed resume, and each failed attempt, is
//! counted; the first close and the last resume are timestamped (ms since the Unix epoch).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

mod handshake;

use super::payload::{BROADCAST_USER, parse_event};
use super::report::{GroupReport, histogram_to_base64, new_histogram};
use crate::auth::Authenticator;

/// The largest frame payload accepted from the server; a larger one is a protocol error.
const MAX_FRAME: u64 = 1 << 20;

/// How long a connect plus upgrade may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What one receiver group does.
#[derive(Debug, Clone)]
pub struct ReceiverPlan {
    /// The server.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// Source address to bind each socket to, if any.
    pub source_ip: Option<IpAddr>,
    /// The first global connection index of this group.
    pub first: usize,
    /// How many connections this group opens.
    pub count: usize,
    /// Users in the whole run; connection `c` belongs to user `c % users`.
    pub users: usize,
    /// The run id.
    pub run: u32,
    /// Handshakes per second this group may start.
    pub connect_rate: f64,
    /// Reconnect with `?last_seq=` after an unexpected close (see the module docs).
    pub reconnect: bool,
}

/// The user id of user index `u` in run `run`.
pub fn user_name(run: u32, u: usize) -> String {
    format!("bench-{run:08x}-{u}")
}

/// Live counters of a group, read by whoever reports progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// Handshakes completed. `Relaxed`: a statistic, nothing is ordered by it.
    pub connected: AtomicU64,
    /// Connects that failed. `Relaxed` likewise.
    pub failed: AtomicU64,
    /// Connections closed after connecting. `Relaxed` likewise.
    pub disconnects: AtomicU64,
    /// Measured events received. `Relaxed` likewise.
    pub received: AtomicU64,
}

impl Progress {
    /// `(connected, failed, disconnects, received)`.
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.connected.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.disconnects.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        ]
    }
}

/// A running receiver group: its progress, and [`ReceiverHandle::finish`] for its report.
#[derive(Debug)]
pub struct ReceiverHandle {
    /// Live counters.
    pub progress: Arc<Progress>,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<GroupReport, String>>,
}

impl ReceiverHandle {
    /// Stops the group (closing its sockets) and returns what it counted.
    pub fn finish(self) -> Result<GroupReport, String> {
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| "receiver thread panicked".to_owned())?
    }
}

/// Starts a group on its own thread: it connects at `connect_rate` and counts until
/// [`ReceiverHandle::finish`].
pub fn start(plan: ReceiverPlan, auth: Arc<Authenticator>) -> io::Result<ReceiverHandle> {
    let progress = Arc::new(Progress::default());
    let (stop, stopped) = oneshot::channel();
    let p = Arc::clone(&progress);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("bench-recv".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run_group(plan, auth, p, stopped))
        })?;
    Ok(ReceiverHandle {
        progress,
        stop,
        thread,
    })
}

/// What every connection task of a group shares (one thread: no locks).
struct Ctx {
    plan: ReceiverPlan,
    auth: Arc<Authenticator>,
    progress: Arc<Progress>,
    counts: RefCell<Counts>,
}

struct Counts {
    hist: Histogram<u64>,
    conns_of_user: Vec<u32>,
    recv_of_user: Vec<u64>,
    leaks: u64,
    duplicates: u64,
    stale: u64,
    protocol_errors: u64,
    first_error: Option<String>,
    seq_holes: u64,
    resumes: u64,
    reconnect_failures: u64,
    /// Failed reconnect attempts by why (see [`failure_reason`]).
    reconnect_failure_reasons: BTreeMap<String, u64>,
    first_disconnect_unix_ms: Option<u64>,
    last_resume_unix_ms: Option<u64>,
    /// The largest measured frame, header included, bytes.
    frame_bytes: u64,
}

async fn run_group(
    plan: ReceiverPlan,
    auth: Arc<Authenticator>,
    progress: Arc<Progress>,
    stopped: oneshot::Receiver<()>,
) -> Result<GroupReport, String> {
    let users = plan.users;
    let ctx = Rc::new(Ctx {
        plan,
        auth,
        progress,
        counts: RefCell::new(Counts {
            hist: new_histogram(),
            conns_of_user: vec![0; users],
            recv_of_user: vec![0; users],
            leaks: 0,
            duplicates: 0,
            stale: 0,
            protocol_errors: 0,
            first_error: None,
            seq_holes: 0,
            resumes: 0,
            reconnect_failures: 0,
            reconnect_failure_reasons: BTreeMap::new(),
            first_disconnect_unix_ms: None,
            last_resume_unix_ms: None,
            frame_bytes: 0,
        }),
    });
    let spawner = tokio::task::spawn_local(connect_all(Rc::clone(&ctx)));
    let _ = stopped.await;
    spawner.abort();
    let c = ctx.counts.borrow();
    let p = ctx.progress.snapshot();
    Ok(GroupReport {
        connected: p[0],
        failed: p[1],
        first_error: c.first_error.clone(),
        disconnects: p[2],
        per_user: (0..users)
            .filter(|&u| c.conns_of_user[u] > 0 || c.recv_of_user[u] > 0)
            .map(|u| [u as u64, u64::from(c.conns_of_user[u]), c.recv_of_user[u]])
            .collect(),
        leaks: c.leaks,
        duplicates: c.duplicates,
        stale: c.stale,
        protocol_errors: c.protocol_errors,
        histogram: histogram_to_base64(&c.hist)?,
        resumes: c.resumes,
        seq_holes: c.seq_holes,
        reconnect_failures: c.reconnect_failures,
        reconnect_failure_reasons: c.reconnect_failure_reasons.clone(),
        first_disconnect_unix_ms: c.first_disconnect_unix_ms,
        last_resume_unix_ms: c.last_resume_unix_ms,
        frame_bytes: c.frame_bytes,
    })
}

/// Spawns the group's connections, paced at `connect_rate`.
async fn connect_all(ctx: Rc<Ctx>) {
    let start = tokio::time::Instant::now();
    let rate = ctx.plan.connect_rate.max(1.0);
    for i in 0..ctx.plan.count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        tokio::task::spawn_local(connection(ctx.plan.first + i, Rc::clone(&ctx)));
    }
}

/// One connection from connect to close (with `reconnect`, to the end of the run).
async fn connection(c: usize, ctx: Rc<Ctx>) {
    let user = c % ctx.plan.users;
    let (mut stream, mut pending) = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        handshake::handshake(&ctx.plan, &ctx.auth, user, None),
    )
    .await
    {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return fail(&ctx, e),
        Err(_) => return fail(&ctx, "connect + upgrade timed out".into()),
    };
    ctx.counts.borrow_mut().conns_of_user[user] += 1;
    ctx.progress.connected.fetch_add(1, Ordering::Relaxed);
    let mut conn = Conn {
        user: user as u32,
        pending: Vec::new(),
        last_server_seq: 0,
        broadcasts: SeenWindow::default(),
        resumes: 0,
    };
    loop {
        // The bytes read past the upgrade response; freed once handled.
        let mut open = conn.input(&ctx, &stream, &std::mem::take(&mut pending));
        while open {
            if stream.readable().await.is_err() {
                break;
            }
            open = conn.on_readable(&ctx, &stream);
        }
        ctx.progress.disconnects.fetch_add(1, Ordering::Relaxed);
        {
            let mut counts = ctx.counts.borrow_mut();
            counts
                .first_disconnect_unix_ms
                .get_or_insert(unix_nanos() / 1_000_000);
        }
        if !ctx.plan.reconnect {
            return;
        }
        drop(stream);
        // A frame cut by the close is gone; the resume replays it whole.
        conn.pending = Vec::new();
        (stream, pending) = resume(&ctx, user, conn.last_server_seq).await;
        conn.resumes += 1;
    }
}

/// Reconnects with `?last_seq=last_seq` until it succeeds, with full-jitter backoff.
async fn resume(ctx: &Ctx, user: usize, last_seq: u64) -> (TcpStream, Vec<u8>) {
    let mut attempt = 0u32;
    loop {
        let cap_ms = (50u64 << attempt.min(6)).min(2000);
        attempt += 1;
        let wait = rand::random_range(0..=cap_ms);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let r = tokio::time::timeout(
            CONNECT_TIMEOUT,
            handshake::handshake(&ctx.plan, &ctx.auth, user, Some(last_seq)),
        )
        .await;
        match r {
            Ok(Ok(x)) => {
                let mut counts = ctx.counts.borrow_mut();
                counts.resumes += 1;
                counts.last_resume_unix_ms = Some(unix_nanos() / 1_000_000);
                return x;
            }
            Ok(Err(e)) => failed_attempt(ctx, failure_reason(&e)),
            Err(_) => failed_attempt(ctx, "timeout"),
        }
    }
}

fn failed_attempt(ctx: &Ctx, reason: &str) {
    let mut counts = ctx.counts.borrow_mut();
    counts.reconnect_failures += 1;
    *counts
        .reconnect_failure_reasons
        .entry(reason.to_owned())
        .or_default() += 1;
}

/// Why a handshake failed, for the report: the refusal's HTTP status (`"503"`, `"429"`, …),
/// `"connect"` (the TCP connect failed: refused, or no local port), or `"io"` (the connection
/// broke during the handshake).
fn failure_reason(e: &str) -> &str {
    if let Some(line) = e.strip_prefix("upgrade refused: ") {
        return line.split(' ').nth(1).unwrap_or("other");
    }
    if e.starts_with("connect ") || e.starts_with("socket") || e.starts_with("bind ") {
        return "connect";
    }
    "io"
}

fn fail(ctx: &Ctx, e: String) {
    ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
    ctx.counts.borrow_mut().first_error.get_or_insert(e);
}

/// A decoded server frame header: `(opcode, header length, payload length)`.
type Header = (u8, usize, usize);

/// Decodes the frame header at the start of `b`: `Ok(None)` when incomplete. Refuses what a
/// server must not send (masked or fragmented frames, reserved bits, control frames over 125
/// bytes) and payloads over [`MAX_FRAME`].
pub(crate) fn frame_header(b: &[u8]) -> Result<Option<Header>, &'static str> {
    let [b0, b1, ..] = *b else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err("reserved bits set");
    }
    if b0 & 0x80 == 0 || b0 & 0x0f == 0 {
        return Err("fragmented frame");
    }
    if b1 & 0x80 != 0 {
        return Err("masked server frame");
    }
    let opcode = b0 & 0x0f;
    let (len, header) = match b1 & 0x7f {
        126 => match b.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(l) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(l);
                (u64::from_be_bytes(a), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode >= 8 && len > 125 {
        return Err("control frame over 125 bytes");
    }
    if len > MAX_FRAME {
        return Err("frame over 1 MiB");
    }
    Ok(Some((opcode, header, len as usize)))
}

/// One connection's receive state.
struct Conn {
    user: u32,
    /// The start of a frame split across reads; unallocated otherwise.
    pending: Vec<u8>,
    last_server_seq: u64,
    broadcasts: SeenWindow,
    /// Times this connection resumed (`--reconnect`).
    resumes: u32,
}

/// Which broadcast sequence numbers a connection has seen, in a sliding window of 64 below
/// the highest (the anti-replay window of IPsec, RFC 4303 §3.4.3). Concurrent publisher
/// connections may reach the server in another order than their numbers, so a broadcast may
/// arrive a little out of order; one seen twice, or older than the window, is a duplicate.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SeenWindow {
    /// The highest number seen (0: none).
    max: u64,
    /// Bit `i` set: `max - i` was seen.
    mask: u64,
}

impl SeenWindow {
    /// Records `seq` (≥ 1); `false` when it was seen before or is too old to tell.
    pub(crate) fn first_time(&mut self, seq: u64) -> bool {
        if seq > self.max {
            let shift = seq - self.max;
            self.mask = if shift >= 64 { 0 } else { self.mask << shift };
            self.mask |= 1;
            self.max = seq;
            return true;
        }
        let back = self.max - seq;
        if back >= 64 || self.mask & (1 << back) != 0 {
            return false;
        }
        self.mask |= 1 << back;
        true
    }
}

impl Conn {
    /// One non-blocking read; `false` when the connection is over.
    fn on_readable(&mut self, ctx: &Ctx, stream: &TcpStream) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match stream.try_read(&mut buf) {
            Ok(0) => false,
            Ok(n) => self.input(ctx, stream, &buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(_) => false,
        }
    }

    /// Handles received bytes; `false` when the connection is over.
    fn input(&mut self, ctx: &Ctx, stream: &TcpStream, data: &[u8]) -> bool {
        if self.pending.is_empty() {
            let (used, open) = self.frames(ctx, stream, data);
            if open {
                self.pending.extend_from_slice(&data[used..]);
            }
            open
        } else {
            let mut p = std::mem::take(&mut self.pending);
            p.extend_from_slice(data);
            let (used, open) = self.frames(ctx, stream, &p);
            if used < p.len() && open {
                p.drain(..used);
                self.pending = p;
            }
            open
        }
    }

    /// Handles every complete frame at the start of `data`: `(bytes used, still open)`.
    fn frames(&mut self, ctx: &Ctx, stream: &TcpStream, data: &[u8]) -> (usize, bool) {
        let now = unix_nanos();
        let mut pos = 0;
        let mut received = 0;
        let mut open = true;
        let mut pong: Vec<u8> = Vec::new();
        while pos < data.len() {
            let (opcode, header, len) = match frame_header(&data[pos..]) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => {
                    ctx.counts.borrow_mut().protocol_errors += 1;
                    open = false;
                    break;
                }
            };
            let Some(payload) = data.get(pos + header..pos + header + len) else {
                break;
            };
            pos += header + len;
            match opcode {
                0x1 => {
                    let measured = self.text(ctx, payload, now);
                    if measured > 0 {
                        // What `--floor` writes (see `bench/floor.rs`).
                        let mut c = ctx.counts.borrow_mut();
                        c.frame_bytes = c.frame_bytes.max((header + len) as u64);
                    }
                    received += measured;
                }
                0x8 => {
                    open = false;
                    break;
                }
                0x9 => {
                    let mask: [u8; 4] = rand::random();
                    pong.extend_from_slice(&[0x8a, 0x80 | payload.len() as u8]);
                    pong.extend_from_slice(&mask);
                    pong.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
                }
                _ => {}
            }
        }
        if received > 0 {
            ctx.progress.received.fetch_add(received, Ordering::Relaxed);
        }
        if !pong.is_empty() {
            // Best effort: a pong is tiny and the send buffer is nearly always empty. A lost
            // pong only matters if it keeps failing for the whole idle timeout.
            let _ = stream.try_write(&pong);
        }
        (pos, open)
    }

    /// Counts one text frame; returns 1 when it is a measured delivery.
    fn text(&mut self, ctx: &Ctx, payload: &[u8], now: u64) -> u64 {
        let Some((server_seq, probe)) = parse_event(payload) else {
            return 0;
        };
        let mut c = ctx.counts.borrow_mut();
        if probe.run != ctx.plan.run {
            c.stale += 1;
            return 0;
        }
        if probe.user != BROADCAST_USER && probe.user != self.user {
            c.leaks += 1;
            return 0;
        }
        let fresh = match server_seq {
            Some(s) => {
                let last = std::mem::replace(&mut self.last_server_seq, s);
                if last > 0 && s > last + 1 {
                    // Seqs are per user and +1 per event: a jump is a hole this connection
                    // will not get (a `gap`, or a loss), told apart here from late ones.
                    c.seq_holes += 1;
                    if c.seq_holes <= 5 {
                        eprintln!(
                            "bench: user {} jumped from seq {last} to {s} (resumed {} times)",
                            self.user, self.resumes
                        );
                    }
                }
                last < s
            }
            None => self.broadcasts.first_time(probe.seq),
        };
        if !fresh {
            c.duplicates += 1;
            return 0;
        }
        if !probe.measured {
            return 0;
        }
        c.recv_of_user[self.user as usize] += 1;
        c.hist.saturating_record(now.saturating_sub(probe.sent_ns));
        1
    }
}

/// Now, ns since the Unix epoch (`CLOCK_REALTIME`).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
