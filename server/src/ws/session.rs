//! One WebSocket connection after the upgrade: a single task that owns the TCP stream and
//! the engine [`Connection`], and waits (`tokio::select!`) on three things:
//!
//! - **the engine** ([`Connection::ready`]): drained frames are complete WebSocket frames,
//!   written as they are with vectored writes, a batch per wake-up;
//! - **the socket** becoming readable: bytes go through the sans-IO [`Decoder`]; each client
//!   message is handled in order (an `ack`, `subscribe` or `ping` is answered before the next
//!   message is read, so a `pong` proves every earlier subscribe is in force);
//! - **the heartbeat timer**: a WebSocket ping every `heartbeat_ms`; a client that sent
//!   nothing (not even a pong) for `idle_timeout_ms` is closed with 1001 `idle timeout`;
//! - **the token's expiry**: one timer set at the upgrade for the token's `exp` plus
//!   `jwt_leeway_secs` (no per-frame cost). When it fires the session closes with
//!   [`TOKEN_EXPIRED`] (4001, reason `token expired`): the client reconnects with a fresh
//!   token and resumes. A batch being written is finished first.
//!
//! # `?protocol=ag-ui`
//!
//! An AG-UI connection translates each frame in [`Session::flush`], just before the write
//! (see [`crate::client::protocol`]): `welcome`, `pong` and `error` become `CUSTOM`
//! `agentcast.*` events, event frames AG-UI events. A native connection skips that loop
//! with one comparison per flush and writes the engine's shared frames untouched.
//!
//! # Order on the wire
//!
//! `welcome` is written before anything is drained, so it precedes the replayed history (and
//! a `gap`, which the engine queues first) and every live event.
//!
//! # Direct writes
//!
//! A native connection gives the engine its socket ([`super::sink::TcpSink`], unless
//! `direct_writes = false`): while the session holds nothing unwritten it *releases* the
//! socket, and the shard's worker writes an event itself when nothing is queued before it
//! (`agentcast_engine::sink`). The session *claims* the socket back before it writes anything:
//! when it is woken for frames, and before it writes a reply, a ping or a close it made
//! itself. Claiming drains the hand-off queue first, so the rest of an event the worker wrote
//! in part goes out before anything else, and a `pong` follows every event handed to the
//! connection before the `ping` was read. It releases again once everything is written, and
//! never after a close frame. AG-UI connections translate every frame, so they never release.
//!
//! # Closing
//!
//! - The engine asks for a close (1001 at shutdown, 1013 for a connection too slow for a
//!   critical event): every frame still in the hand-off queue is written, then the close. At
//!   a graceful shutdown the engine asks for the 1001 only once the connection's ring is empty
//!   too, so every frame queued to it is written first.
//! - The shutdown grace period ends (`AppState::abandon`) while a write is blocked on a client
//!   that does not read: the session stops, adds the frames it still held to the
//!   `shutdown_unwritten` counter (the engine counts what was still queued to it) and ends
//!   without a close frame.
//! - The client sends a close: it is echoed with the same code.
//! - A protocol violation: close 1002 (1007 for invalid UTF-8), see [`super::codec`].
//! - Sustained abuse (see [`super::guard`]): close 1008.
//! - The token expired: close 4001 `token expired`.
//! - A frame announcing more than 64 × `max_message_bytes`: close 1009 (see [`super::codec`]).
//! - Dev mode only: `POST /api/v1/dev/disconnect` closes a user's sessions with 1012.
//!
//! After a close frame the write side is shut and the socket is read until EOF (at most
//! [`LINGER`]), so unread client bytes never turn the close into a reset that could discard
//! frames the client has not read yet.
//!
//! # Memory
//!
//! Every idle connection keeps its task, so the task is kept small, and the connection holds
//! no other task:
//!
//! - **One task per connection.** The session waits for input with `poll_read_ready`, which
//!   puts its waker in the socket's single reader slot. hyper's reads left the HTTP task's
//!   waker there; waiting with `readable()` (another slot) left it in place, so the finished
//!   HTTP task (1.4 KiB) stayed allocated until the client first sent a byte, forever for a
//!   client that only listens. `tests/tests/idle_connection_memory.rs` counts the heap.
//! - **About 1.2 KiB of future** (`-Zprint-type-sizes`; 2.1 KiB before): the session and the
//!   engine handle are made before the upgrade and run by reference (an `async fn` keeps a
//!   by-value argument twice); one timer serves the heartbeat and the token's expiry; what
//!   only some connections wait for is boxed when they do: a socket that would block
//!   ([`Session::write_blocked`]), a `subscribe` (the broker, in cluster mode), the close's
//!   linger, the dev-mode disconnect watch.
//!
//! Reads go through a stack buffer into the decoder, which keeps at most 1 KiB once idle; the
//! write batch keeps the capacity of the largest batch (32 × 32 bytes by default). The bytes
//! hyper read past the upgrade request are fed to the decoder and released at once (they may
//! share hyper's whole 8 KiB read buffer). Measured with a release build (`agentcast bench`,
//! 15,000 idle connections of 7,500 users): 5.0–5.8 KiB each of server RSS, the engine's
//! hand-off queue (1 KiB), tokio's I/O registration and allocator overhead included; heap
//! profile in `docs/benchmarks.md`. Socket writes never block the task beyond
//! `write_timeout_ms`: a client that stops reading is dropped.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use agentcast_engine::frame::Opcode;
use agentcast_engine::{ChannelName, ClientMessage, Connection, Frame, ParseError, Readiness};
use bytes::{Buf, Bytes};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::codec::{Decoder, Message};
use super::guard::{StrikeWindow, TokenBucket};
use super::sink::TcpSink;
use crate::auth::Identity;
use crate::client::admit::TierGauge;
use crate::client::lifecycle::{
    Subscribed, TOKEN_EXPIRED, Watches, abandoned, engine_close_reason, subscribe, token_deadline,
    welcome_json,
};
use crate::client::protocol::{self, Protocol};
use crate::metrics::inc;
use crate::state::AppState;

/// How long a closing connection waits for the client's side of the close.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// Bytes read from the socket per read call (on the stack, not kept per connection).
const READ_CHUNK: usize = 4096;

/// Most frames handed to one vectored write.
const MAX_IOV: usize = 64;

/// "1008 indicates that an endpoint is terminating the connection because it has received a
/// message that violates its policy".
const POLICY_VIOLATION: u16 = 1008;

/// What handling input decided.
enum Flow {
    Continue,
    /// Send a close frame with this code and reason, then end.
    Close(u16, &'static str),
    /// The peer is gone (EOF or I/O error): end without a close frame.
    Gone,
}

/// What handling one client message decided.
enum Step {
    Flow(Flow),
    /// A `subscribe`, which may wait for the broker: see [`Session::subscribe_to`].
    Subscribe(ChannelName),
}

/// Per-connection state besides the socket and the engine handle.
pub(crate) struct Session {
    state: Arc<AppState>,
    id: Identity,
    decoder: Decoder,
    bucket: TokenBucket,
    strikes: StrikeWindow,
    /// Frames to write next (drained events, replies), in order.
    out: Vec<Bytes>,
    last_heard: Instant,
    /// Publish time of the oldest event frame in `out` (see `Connection::take_publish_stamp`).
    stamp: Option<u64>,
    /// Turns `true` when the shutdown grace period is over (see the [module docs](self)).
    abandon: tokio::sync::watch::Receiver<bool>,
    /// The broker's lease on each channel this connection subscribed to (see
    /// [`Watches`]).
    watches: Watches,
    /// `?protocol=`: AG-UI connections translate each frame before it is written.
    protocol: Protocol,
    /// Frames at the front of `out` already in the connection's protocol (AG-UI only).
    adapted: usize,
    /// The session owns the socket (see the module docs, "Direct writes"): the worker does
    /// not write to it. Starts true.
    owned: bool,
    /// A sink was given to the engine: the session releases the socket when idle.
    direct: bool,
    /// Frames taken per drain (`write_batch`).
    batch: usize,
}

impl Session {
    /// The session of an admitted client, made before the upgrade completes (see
    /// [`Session::run`]).
    pub(crate) fn new(id: Identity, protocol: Protocol, state: Arc<AppState>) -> Session {
        let now = Instant::now();
        let limits = &state.cfg.limits;
        Session {
            decoder: Decoder::new(limits.max_message_bytes),
            bucket: TokenBucket::new(limits.rate_per_sec, limits.rate_burst, now.into_std()),
            strikes: StrikeWindow::new(
                limits.abuse_max_errors,
                limits.abuse_window(),
                now.into_std(),
            ),
            out: Vec::new(),
            last_heard: now,
            stamp: None,
            abandon: state.abandon.subscribe(),
            watches: Watches::new(),
            protocol,
            adapted: 0,
            owned: true,
            direct: false,
            batch: state.hub.config().write_batch,
            id,
            state,
        }
    }

    /// The server's state.
    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs the connection to its end. See the [module docs](self).
    ///
    /// Takes the session and the engine handle by reference, so the task's future holds
    /// them once (an `async fn` keeps its by-value arguments twice: as given and as bound).
    pub(crate) async fn run(&mut self, conn: &mut Connection, stream: TcpStream, pre_read: Bytes) {
        self.last_heard = Instant::now();
        let stream = Arc::new(stream);
        if self.protocol == Protocol::Native && self.state.cfg.direct_writes {
            conn.attach_sink(Arc::new(TcpSink {
                stream: Arc::clone(&stream),
                metrics: Arc::clone(&self.state.metrics),
            }));
            self.direct = true;
        }
        // The pre-read bytes may share hyper's whole read buffer: feed them and let go at once.
        self.decoder.feed(&pre_read);
        drop(pre_read);
        let _tier_gauge = TierGauge::open(&self.state.metrics, &self.id);
        let flow = self.drive(&stream, conn).await;
        if let Flow::Close(code, reason) = flow {
            // Claimed for good: nothing is written after the close frame.
            self.claim(conn);
            self.out.push(Frame::close(code, reason).into_bytes());
            if self.flush(&stream).await.is_ok() {
                // Cold (once per connection): boxed, so it adds nothing to the task's size.
                Box::pin(linger(&stream)).await;
            } else {
                // The close frame (last, perhaps partly written) is not an event.
                self.out.pop();
            }
        }
        if self.state.is_shutting_down() && !self.out.is_empty() {
            // Frames taken from the engine and never written whole: a shutdown loses nothing
            // silently (what is still queued in the engine is counted there when `conn` drops).
            self.state
                .metrics
                .shutdown_unwritten
                .fetch_add(self.out.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn drive(&mut self, stream: &TcpStream, conn: &mut Connection) -> Flow {
        let heartbeat = self.state.cfg.heartbeat();
        let idle = self.state.cfg.idle_timeout();
        let batch = self.batch;
        self.out.push(self.welcome(conn).into_bytes());
        if self.flush(stream).await.is_err() {
            return Flow::Gone;
        }
        if let Some(end) = self.handle_input(conn).await {
            return end;
        }
        // One timer for the heartbeat and the token's expiry, set for whichever comes first
        // (a second `Sleep` would add 112 bytes to every connection's task).
        let expires_at = token_deadline(&self.state, &self.id);
        let mut ping_at = Instant::now() + heartbeat;
        let timer = tokio::time::sleep_until(ping_at.min(expires_at));
        tokio::pin!(timer);
        let mut kick = crate::http::dev::Kick::new(&self.state, &self.id.user);
        loop {
            if self.direct && self.owned && self.out.is_empty() {
                // Everything taken is written: the worker may write the next event itself.
                conn.release_socket();
                self.owned = false;
            }
            tokio::select! {
                () = std::future::poll_fn(|cx| kick.poll_kicked(cx)) => {
                    return Flow::Close(crate::http::dev::KICK_CODE, "dev disconnect: reconnect and resume");
                }
                ready = conn.ready() => match ready {
                    Readiness::Frames => {
                        if self.owned {
                            conn.drain_into(&mut self.out, batch);
                            self.take_stamp(conn);
                        } else {
                            self.claim(conn);
                        }
                    }
                    Readiness::Closed(code) => {
                        self.claim(conn);
                        while conn.drain_into(&mut self.out, batch) > 0 {}
                        return Flow::Close(code, engine_close_reason(code));
                    }
                },
                readable = std::future::poll_fn(|cx| stream.poll_read_ready(cx)) => {
                    if readable.is_err() {
                        return Flow::Gone;
                    }
                    match self.read_some(stream) {
                        Ok(0) => return Flow::Gone,
                        Ok(_) => {
                            self.last_heard = Instant::now();
                            if let Some(end) = self.handle_input(conn).await {
                                return end;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return Flow::Gone,
                    }
                }
                () = &mut timer => {
                    if timer.deadline() >= expires_at {
                        inc(&self.state.metrics.token_expired_closes);
                        return Flow::Close(TOKEN_EXPIRED, "token expired");
                    }
                    let now = Instant::now();
                    if now.duration_since(self.last_heard) >= idle {
                        inc(&self.state.metrics.idle_timeouts);
                        return Flow::Close(1001, "idle timeout");
                    }
                    self.out.push(Frame::new(Opcode::Ping, b"").into_bytes());
                    ping_at = now + heartbeat;
                    timer.as_mut().reset(ping_at.min(expires_at));
                }
            }
            if !self.out.is_empty() {
                // A reply or ping made while the worker may write: take the socket first.
                self.claim(conn);
                if self.flush(stream).await.is_err() {
                    return Flow::Gone;
                }
            }
        }
    }

    /// Takes the socket back from the worker (see the module docs, "Direct writes"): what the
    /// engine handed the connection meanwhile is drained and put *before* the frames the
    /// session made itself, which are newer. No-op while owned.
    fn claim(&mut self, conn: &mut Connection) {
        if self.owned {
            return;
        }
        self.owned = true;
        let own = self.out.len();
        conn.claim_socket(&mut self.out, self.batch);
        self.out.rotate_left(own);
        self.take_stamp(conn);
    }

    /// One non-blocking read into the decoder. `Ok(0)` is EOF.
    fn read_some(&mut self, stream: &TcpStream) -> io::Result<usize> {
        let mut buf = [0u8; READ_CHUNK];
        let n = stream.try_read(&mut buf)?;
        self.decoder.feed(&buf[..n]);
        Ok(n)
    }

    /// Handles every complete message buffered; `Some` ends the connection.
    async fn handle_input(&mut self, conn: &mut Connection) -> Option<Flow> {
        loop {
            let msg = match self.decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => return None,
                Err(e) => {
                    if e == super::codec::ProtocolError::TooLarge {
                        inc(&self.state.metrics.frame_too_large_closes);
                        return Some(Flow::Close(e.close_code(), "message too big"));
                    }
                    inc(&self.state.metrics.protocol_errors);
                    tracing::debug!(user = %self.id.user, error = %e, "protocol error");
                    return Some(Flow::Close(e.close_code(), "protocol error"));
                }
            };
            let flow = match msg {
                Message::Pong(_) => Flow::Continue,
                Message::Close(frame) => {
                    let code = frame.map_or(1000, |f| f.code);
                    return Some(Flow::Close(code, ""));
                }
                other => {
                    if self.bucket.allow(std::time::Instant::now()) {
                        match self.handle_message(other, conn) {
                            Step::Flow(flow) => flow,
                            // Boxed: it may wait for the broker (cluster mode), and is kept
                            // out of the task's future, which every idle connection holds.
                            Step::Subscribe(channel) => {
                                Box::pin(self.subscribe_to(channel, conn)).await
                            }
                        }
                    } else {
                        inc(&self.state.metrics.client_rate_limited);
                        self.reply_error("rate_limited", "too many messages; slow down")
                    }
                }
            };
            if !matches!(flow, Flow::Continue) {
                return Some(flow);
            }
        }
    }

    fn handle_message(&mut self, msg: Message, conn: &mut Connection) -> Step {
        let m = &self.state.metrics;
        match msg {
            Message::Ping(payload) => {
                self.out
                    .push(Frame::new(Opcode::Pong, &payload).into_bytes());
                Step::Flow(Flow::Continue)
            }
            Message::Oversize { len } => {
                inc(&m.client_messages);
                inc(&m.client_oversize);
                let max = self.state.cfg.limits.max_message_bytes;
                Step::Flow(self.reply_error(
                    "too_large",
                    &format!("message of {len} bytes exceeds the limit of {max}"),
                ))
            }
            Message::Binary(_) => {
                inc(&m.client_messages);
                Step::Flow(self.reply_error(
                    "bad_message",
                    "binary messages are not supported; send JSON text",
                ))
            }
            Message::Text(text) => {
                inc(&m.client_messages);
                match ClientMessage::parse(text.as_bytes()) {
                    Ok(cm) => self.handle_client_message(cm, conn),
                    Err(e) => Step::Flow(self.reply_error(parse_error_code(&e), &e.to_string())),
                }
            }
            Message::Pong(_) | Message::Close(_) => Step::Flow(Flow::Continue),
        }
    }

    fn handle_client_message(&mut self, msg: ClientMessage, conn: &mut Connection) -> Step {
        match msg {
            ClientMessage::Ack { seq } => {
                conn.ack(seq);
                self.state.broker.ack(conn.user(), seq);
            }
            ClientMessage::Ping => {
                // Every event handed to the connection before the ping was read goes out
                // before the pong (the worker may have queued some since the last drain).
                if self.owned {
                    conn.drain_into(&mut self.out, self.batch);
                    self.take_stamp(conn);
                } else {
                    self.claim(conn);
                }
                self.out
                    .push(Frame::text(br#"{"type":"pong"}"#).into_bytes());
            }
            ClientMessage::Subscribe { channel } => return Step::Subscribe(channel),
            ClientMessage::Unsubscribe { channel } => {
                self.watches.remove(&channel);
                conn.unsubscribe(channel);
            }
        }
        Step::Flow(Flow::Continue)
    }

    /// A `subscribe`, answered before the next message is read (so a `pong` proves it).
    async fn subscribe_to(&mut self, channel: ChannelName, conn: &Connection) -> Flow {
        let shown = channel.to_string();
        match subscribe(&self.state, &self.id, conn, &mut self.watches, channel).await {
            Subscribed::Yes => Flow::Continue,
            Subscribed::Forbidden => self.reply_error(
                "forbidden",
                &format!("not allowed to subscribe to `{shown}`"),
            ),
            Subscribed::Limit { max } => self.reply_error(
                "subscription_limit",
                &format!("subscription limit of {max} reached"),
            ),
            Subscribed::Unavailable(e) => self.reply_error("unavailable", &e),
            Subscribed::ShuttingDown => {
                self.reply_error("shutting_down", "server is shutting down")
            }
            Subscribed::Closed => Flow::Close(1001, "server shutting down"),
        }
    }

    /// Queues an `error` message; closes with 1008 when the abuse limit is reached.
    fn reply_error(&mut self, code: &str, message: &str) -> Flow {
        inc(&self.state.metrics.client_errors);
        let body = json!({"type": "error", "code": code, "message": message});
        self.out
            .push(Frame::text(body.to_string().as_bytes()).into_bytes());
        if self.strikes.strike(std::time::Instant::now()) {
            inc(&self.state.metrics.abuse_closes);
            return Flow::Close(POLICY_VIOLATION, "too many invalid or excess messages");
        }
        Flow::Continue
    }

    fn welcome(&self, conn: &Connection) -> Frame {
        Frame::text(welcome_json(&self.state, &self.id, conn).as_bytes())
    }

    /// Keeps the oldest publish stamp of the frames waiting in `out`.
    fn take_stamp(&mut self, conn: &Connection) {
        if let Some(t) = conn.take_publish_stamp() {
            self.stamp = Some(self.stamp.map_or(t, |s| s.min(t)));
        }
    }

    /// Writes every queued frame, bounded by the write timeout and by the end of a shutdown
    /// grace period. On failure `out` keeps what was not written whole.
    ///
    /// Most flushes finish in the synchronous writes of [`write_ready`]; only a socket that
    /// would block goes on to [`Session::write_blocked`], boxed, so its timer and shutdown
    /// signal add nothing to the task's future (which every idle connection keeps).
    async fn flush(&mut self, stream: &TcpStream) -> io::Result<()> {
        let n = self.out.len() as u64;
        if self.protocol == Protocol::AgUi {
            // Only frames not yet translated: a write cut short keeps translated ones.
            for f in self.out.iter_mut().skip(self.adapted) {
                *f = protocol::ws_frame(std::mem::take(f));
            }
        }
        let mut result = write_ready(stream, &mut self.out);
        if result.is_ok() && !self.out.is_empty() {
            result = Box::pin(self.write_blocked(stream)).await;
        }
        // Whatever is left in `out` was translated above.
        self.adapted = self.out.len();
        result?;
        self.state
            .metrics
            .frames_written
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.stamp.take() {
            let now = agentcast_engine::health::mono_us();
            self.state.metrics.latency.observe_us(now.saturating_sub(t));
        }
        // A write the socket takes at once spends none of tokio's cooperative budget (the
        // wait in `write_blocked` did): spend it here, so a session whose queue keeps
        // refilling still yields to the other tasks of its thread.
        tokio::task::consume_budget().await;
        Ok(())
    }

    /// The rest of a flush once the socket would block: waits for it, at most
    /// `write_timeout_ms`, and not past the shutdown grace period.
    async fn write_blocked(&mut self, stream: &TcpStream) -> io::Result<()> {
        let limit = self.state.cfg.limits.write_timeout();
        let write = tokio::time::timeout(limit, write_frames(stream, &mut self.out));
        let result = tokio::select! {
            // Biased, the write first: a write that completes at once never polls (or
            // registers with) the abandon signal.
            biased;
            r = write => Some(r),
            () = abandoned(&mut self.abandon) => None,
        };
        match result {
            None => Err(io::Error::other("shutdown grace period over")),
            Some(Ok(r)) => r,
            Some(Err(_)) => {
                inc(&self.state.metrics.write_timeouts);
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }
}

/// The client `error` code of a message the engine could not parse.
fn parse_error_code(e: &ParseError) -> &'static str {
    match e {
        ParseError::Json(_) | ParseError::TooDeep { .. } | ParseError::TopLevel { .. } => {
            "invalid_json"
        }
        ParseError::UnknownType(_) => "unknown_type",
        ParseError::Missing(_)
        | ParseError::WrongType { .. }
        | ParseError::Invalid { .. }
        | ParseError::Duplicate(_) => "invalid_field",
        _ => "bad_message",
    }
}

/// Writes what the socket takes now (vectored writes, no waiting), removing each frame once
/// written whole; stops at the first would-block (also when tokio has not seen the socket
/// writable yet: `try_write_vectored` then makes no system call).
fn write_ready(stream: &TcpStream, frames: &mut Vec<Bytes>) -> io::Result<()> {
    while !frames.is_empty() {
        match try_write(stream, frames) {
            Ok(done) => {
                frames.drain(..done);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `frames` with vectored writes, removing each frame once written whole (so a write
/// cut short leaves exactly the unwritten ones; the vector keeps its capacity).
async fn write_frames(stream: &TcpStream, frames: &mut Vec<Bytes>) -> io::Result<()> {
    while !frames.is_empty() {
        stream.writable().await?;
        match try_write(stream, frames) {
            Ok(done) => {
                frames.drain(..done);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One vectored write of up to [`MAX_IOV`] frames; advances a partly written frame and
/// returns how many were written whole. Synchronous, so the iovec array never lives in the
/// task's future.
fn try_write(stream: &TcpStream, frames: &mut [Bytes]) -> io::Result<usize> {
    let n = frames.len().min(MAX_IOV);
    let mut written = {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        for (slot, f) in iov.iter_mut().zip(&frames[..n]) {
            *slot = IoSlice::new(f);
        }
        stream.try_write_vectored(&iov[..n])?
    };
    if written == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    let mut done = 0;
    for f in &mut frames[..n] {
        if written >= f.len() {
            written -= f.len();
            done += 1;
        } else {
            f.advance(written);
            break;
        }
    }
    Ok(done)
}

/// Shuts the write side and reads until EOF, at most [`LINGER`]. (The stream is shared with
/// the engine's sink, so the shutdown goes through `socket2`; the worker writes nothing after
/// the close frame, see `claim`.)
async fn linger(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 64];
        loop {
            if stream.readable().await.is_err() {
                break;
            }
            match stream.try_read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    })
    .await;
}
