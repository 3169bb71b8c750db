//! The publishing side of the load generator: `POST /api/v1/publish`, one event per request,
//! over several keep-alive HTTP/1.1 connections.
//!
//! # Schedule
//!
//! Event `i` is due at `start + i × period` (per-user: `period = 1 / rate`; broadcast:
//! `--interval-ms`). The first `warmup × rate` events are warm-up (`m: 0`), the next
//! `duration × rate` are measured (`m: 1`). Each publisher connection takes the next index,
//! waits until it is due, stamps `t` and sends; so when the server answers slower than the
//! schedule, events go out late (back to back) rather than being skipped, and the achieved
//! rate in the report shows it. `t` is the actual send time, so latency is publish → receive
//! and does not include time spent waiting for a free publisher connection.
//!
//! # Client
//!
//! A minimal HTTP/1.1 client: the request head is formatted into a reused buffer and the
//! response read until its `content-length` body is complete; a broken connection is
//! re-opened and counted as an error. Only a `200` counts as sent; its receipt's
//! `connections` is summed as the server's own count of expected deliveries.

use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client::{unix_nanos, user_name};
use super::payload::{BROADCAST_USER, Probe, write_data};

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// The server: the first node.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// Every node (cluster mode: `--url` lists several); publisher connection `i` publishes
    /// to node `i % nodes.len()`.
    pub nodes: Vec<(SocketAddr, String)>,
    /// The publish API key.
    pub api_key: String,
    /// The run id.
    pub run: u32,
    /// Users (per-user targets are drawn uniformly from `0..users`); `None` for broadcast.
    pub users: Option<usize>,
    /// Time between two events.
    pub period: Duration,
    /// Warm-up events (first).
    pub warmup_events: u64,
    /// Measured events (after the warm-up).
    pub measured_events: u64,
    /// Size of `data`.
    pub payload_bytes: usize,
    /// Concurrent HTTP connections.
    pub connections: usize,
}

/// Live counters of the publisher. `Relaxed` everywhere: statistics, nothing is ordered by
/// them.
#[derive(Debug, Default)]
pub struct PublishProgress {
    /// Events answered 200 (warm-up and measured).
    pub sent: AtomicU64,
    /// Failed requests.
    pub errors: AtomicU64,
}

/// What the publisher did.
#[derive(Debug, Clone, Default)]
pub struct PublishOutcome {
    /// Measured events answered 200, per target user (index `users` is broadcasts).
    pub measured_per_target: Vec<u64>,
    /// Measured events answered 200.
    pub measured: u64,
    /// Sum of the measured receipts' `connections`.
    pub receipt_connections: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Failed requests answered `503`.
    pub errors_503: u64,
    /// When the first request failed, ms since the Unix epoch.
    pub first_error_unix_ms: Option<u64>,
    /// When the last request failed, ms since the Unix epoch.
    pub last_error_unix_ms: Option<u64>,
}

/// Shared by the publisher tasks (one thread).
struct State {
    plan: PublishPlan,
    start: Instant,
    next: Cell<u64>,
    out: RefCell<PublishOutcome>,
    /// Per-target publisher sequence numbers.
    seqs: RefCell<Vec<u64>>,
    progress: Arc<PublishProgress>,
}

/// Publishes the whole schedule from `start`. Runs inside a `LocalSet`.
pub async fn run(
    plan: PublishPlan,
    start: Instant,
    progress: Arc<PublishProgress>,
) -> PublishOutcome {
    let targets = plan.users.map_or(1, |u| u + 1);
    let connections = if plan.users.is_none() {
        1
    } else {
        plan.connections.max(1)
    };
    let st = Rc::new(State {
        out: RefCell::new(PublishOutcome {
            measured_per_target: vec![0; targets],
            ..PublishOutcome::default()
        }),
        seqs: RefCell::new(vec![0; targets]),
        next: Cell::new(0),
        start,
        plan,
        progress,
    });
    let tasks: Vec<_> = (0..connections)
        .map(|i| tokio::task::spawn_local(publisher(Rc::clone(&st), i as u64)))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    st.out.borrow().clone()
}

/// One publisher connection.
async fn publisher(st: Rc<State>, id: u64) {
    let plan = &st.plan;
    let (addr, host) = plan
        .nodes
        .get(id as usize % plan.nodes.len().max(1))
        .cloned()
        .unwrap_or_else(|| (plan.addr, plan.host.clone()));
    let total = plan.warmup_events + plan.measured_events;
    let mut rng = SmallRng::seed_from_u64(u64::from(plan.run) ^ (id << 32));
    let mut conn: Option<TcpStream> = None;
    let mut req = Vec::with_capacity(plan.payload_bytes + 512);
    let mut body = Vec::with_capacity(plan.payload_bytes + 128);
    let mut resp = Vec::with_capacity(1024);
    loop {
        let i = st.next.get();
        if i >= total {
            break;
        }
        st.next.set(i + 1);
        tokio::time::sleep_until(st.start + plan.period.mul_f64(i as f64)).await;
        let measured = i >= plan.warmup_events;
        let (target, user) = match plan.users {
            Some(u) => {
                let t = rng.random_range(0..u);
                (t, t as u32)
            }
            None => (0, BROADCAST_USER),
        };
        let seq = {
            let mut s = st.seqs.borrow_mut();
            s[target] += 1;
            s[target]
        };
        // Stamp the send time, then format: formatting ~300 bytes takes well under a
        // microsecond, and the request is written right after.
        let probe = Probe {
            run: plan.run,
            sent_ns: unix_nanos(),
            user,
            seq,
            measured,
        };
        body.clear();
        match plan.users {
            Some(_) => {
                let _ = write!(body, r#"{{"user_id":"{}","#, user_name(plan.run, target));
            }
            None => body.extend_from_slice(br#"{"broadcast":true,"#),
        }
        body.extend_from_slice(br#""type":"tool_executing","run_id":"bench","data":"#);
        write_data(&mut body, &probe, plan.payload_bytes);
        body.push(b'}');
        req.clear();
        let _ = write!(
            req,
            "POST /api/v1/publish HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            host,
            plan.api_key,
            body.len()
        );
        req.extend_from_slice(&body);
        match send(&mut conn, addr, &req, &mut resp).await {
            Ok((200, connections)) => {
                st.progress.sent.fetch_add(1, Ordering::Relaxed);
                if measured {
                    let mut o = st.out.borrow_mut();
                    o.measured += 1;
                    o.measured_per_target[target] += 1;
                    o.receipt_connections += connections;
                }
            }
            Ok((status, _)) => {
                let text = String::from_utf8_lossy(&resp).into_owned();
                if status == 503 {
                    st.out.borrow_mut().errors_503 += 1;
                }
                error(&st, format!("HTTP {status}: {text}"));
            }
            Err(e) => {
                conn = None;
                error(&st, e);
            }
        }
    }
}

fn error(st: &State, e: String) {
    st.progress.errors.fetch_add(1, Ordering::Relaxed);
    let mut o = st.out.borrow_mut();
    let now_ms = unix_nanos() / 1_000_000;
    o.errors += 1;
    o.first_error.get_or_insert(e);
    o.first_error_unix_ms.get_or_insert(now_ms);
    o.last_error_unix_ms = Some(now_ms);
}

/// Sends one request on the keep-alive connection (opening it if needed) and reads the
/// response: `(status, receipt connections)`; the body is left in `resp`.
pub(crate) async fn send(
    conn: &mut Option<TcpStream>,
    addr: SocketAddr,
    req: &[u8],
    resp: &mut Vec<u8>,
) -> Result<(u16, u64), String> {
    if conn.is_none() {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        *conn = Some(s);
    }
    let Some(s) = conn.as_mut() else {
        return Err("no connection".into());
    };
    s.write_all(req)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    resp.clear();
    loop {
        if let Some((status, head, len)) = parse_head(resp)? {
            if resp.len() >= head + len {
                resp.drain(..head);
                resp.truncate(len);
                let connections = receipt_connections(resp).unwrap_or(0);
                return Ok((status, connections));
            }
        }
        if resp.len() > 64 * 1024 {
            return Err("response too long".into());
        }
        let n = s
            .read_buf(resp)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
    }
}

/// `(status, head length, content length)` of a complete response head, `None` when more
/// bytes are needed.
pub(crate) fn parse_head(b: &[u8]) -> Result<Option<(u16, usize, usize)>, String> {
    let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&b[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let mut len = None;
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            len = value.trim().parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked responses are not supported".into());
        }
    }
    let len = len.ok_or("response without content-length")?;
    Ok(Some((status, end + 4, len)))
}

/// The `connections` of a receipt body.
fn receipt_connections(body: &[u8]) -> Option<u64> {
    let at = body.windows(14).position(|w| w == br#""connections":"#)?;
    let digits = &body[at + 14..];
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..n]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_parse() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{\"connections\":2,\"seq\":5}";
        assert_eq!(parse_head(r), Ok(Some((200, 71, 27))));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le"), Ok(None));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert_eq!(
            receipt_connections(br#"{"seq":5,"connections":12}"#),
            Some(12)
        );
        assert_eq!(receipt_connections(br#"{"error":"x"}"#), None);
    }
}
