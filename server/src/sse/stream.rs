//! One event stream after the `200`: a task that owns the engine [`Connection`] and feeds a
//! hyper response body through a one-chunk channel. The task waits (`tokio::select!`) on:
//!
//! - **the engine** ([`Connection::ready`]): frames are drained with
//!   [`Connection::drain_into`], at most `write_batch` per wake-up as on WebSocket, encoded
//!   into one chunk ([`super::encode`]) and handed to the body;
//! - **the heartbeat timer**: a `: ping` comment every `heartbeat_ms`, which also finds out
//!   a client that went away (the write fails, hyper drops the body);
//! - **the token's expiry**: at `exp` + leeway, `event: close` `{"code":4001,...}`, then the
//!   stream ends (a fresh token reconnects and resumes);
//! - **the body being dropped** (the client disconnected): the task ends at once.
//!
//! # Backpressure, lag and slow consumers
//!
//! hyper polls the body only while its write buffer has room, so a client that stops reading
//! stops the task's hand-off, the task stops draining, and the engine's bounded rings take
//! over exactly as for a WebSocket client: low then normal events are dropped (counted), and a
//! critical event that cannot be queued makes the engine ask for a close with 1013, which the
//! task sends as `event: close` once the client reads again. Memory per stream is bounded by
//! one chunk in the channel, hyper's write buffer (about 400 KiB) and the socket buffers.
//!
//! A hand-off that waits longer than `write_timeout_ms` (the client read nothing for that
//! long) ends the stream without a close, as a WebSocket write timeout does, and aborts the
//! HTTP connection ([`Abort`]): hyper could not end a response whose socket is full.
//!
//! # Closing
//!
//! - The engine asks for a close (1001 at a graceful shutdown once the ring is empty, 1013,
//!   1011), or a close frame comes out of the drained frames: every frame before it is sent,
//!   then `event: close` with `{"code", "reason"}`, then the response ends.
//! - The shutdown grace period ends while the hand-off is blocked: the frames not handed
//!   over are added to `shutdown_unwritten` and the connection is aborted.
//! - Dev mode only: `POST /api/v1/dev/disconnect` closes a user's streams with 1012.
//!
//! After the last chunk the task waits (at most [`LINGER`]) for hyper to drop the body, so
//! the connection's slots are given back only once the final event left the task's hands.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use agentcast_engine::{Connection, Readiness};
use bytes::{Bytes, BytesMut};
use http::Response;
use http::header::{self, HeaderValue};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::encode::{self, Close};
use crate::auth::Identity;
use crate::client::admit::{Admission, TierGauge};
use crate::client::lifecycle::{
    TOKEN_EXPIRED, Watches, abandoned, engine_close_reason, token_deadline, welcome_json,
};
use crate::client::protocol::Protocol;
use crate::http::Body;
use crate::metrics::inc;
use crate::server::Abort;
use crate::state::AppState;
use crate::ws::session::LINGER;

/// The `retry:` hint: how long an `EventSource` waits before it reconnects (and resumes with
/// `Last-Event-ID`). Short, since a reconnect loses nothing.
pub(crate) const RETRY_MS: u64 = 2000;

/// A connection admitted, registered and subscribed, ready to stream.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) state: Arc<AppState>,
    pub(crate) identity: Identity,
    pub(crate) conn: Connection,
    pub(crate) watches: Watches,
    pub(crate) admission: Admission,
    /// Closes the HTTP connection when the client stopped reading (absent in unit use).
    pub(crate) abort: Option<Abort>,
    /// `?protocol=`: native, or AG-UI events translated per frame in this stream's task.
    pub(crate) protocol: Protocol,
}

/// One piece of the body; `last` ends it.
struct Chunk {
    bytes: Bytes,
    last: bool,
}

/// Spawns the stream's task and answers `200` with its body. See the [module docs](self).
pub(crate) fn start(opened: Opened) -> Response<Body> {
    let (tx, rx) = mpsc::channel(1);
    inc(&opened.state.metrics.sse_accepted);
    tokio::spawn(run(opened, tx));
    let mut r = Response::new(Body::streaming(SseBody { rx, done: false }));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// Why the hand-off failed: the stream ends without another word.
struct Gone;

/// The task's state besides the engine connection.
struct Stream {
    state: Arc<AppState>,
    id: Identity,
    tx: mpsc::Sender<Chunk>,
    abort: Option<Abort>,
    abandon: tokio::sync::watch::Receiver<bool>,
    /// Frames drained and not yet encoded (kept for its capacity).
    raw: Vec<Bytes>,
    /// The chunk being built.
    out: BytesMut,
    /// Frames in `out` (counted as written once handed over).
    frames: u64,
    /// Publish time of the oldest event in `out` (see `Connection::take_publish_stamp`).
    stamp: Option<u64>,
    /// `?protocol=` (see [`Opened::protocol`]).
    protocol: Protocol,
}

async fn run(opened: Opened, tx: mpsc::Sender<Chunk>) {
    let Opened {
        state,
        identity,
        mut conn,
        watches,
        admission,
        abort,
        protocol,
    } = opened;
    let _tier_gauge = TierGauge::open(&state.metrics, &identity);
    state.metrics.sse_open.fetch_add(1, Relaxed);
    let mut s = Stream {
        abandon: state.abandon.subscribe(),
        state,
        id: identity,
        tx,
        abort,
        raw: Vec::new(),
        out: BytesMut::new(),
        frames: 0,
        stamp: None,
        protocol,
    };
    if let Some(close) = s.drive(&mut conn).await {
        encode::close_event(&close, &mut s.out, s.protocol);
        if s.hand_off(true).await.is_ok() {
            let _ = tokio::time::timeout(LINGER, s.tx.closed()).await;
        }
    }
    if s.state.is_shutting_down() && s.frames > 0 {
        // Frames taken from the engine and never handed to the body (the engine counts what
        // is still queued to it when `conn` drops).
        s.state
            .metrics
            .shutdown_unwritten
            .fetch_add(s.frames, Relaxed);
    }
    s.state.metrics.sse_open.fetch_sub(1, Relaxed);
    // The engine connection first, then the broker's watches, then the slots.
    drop(conn);
    drop(watches);
    drop(admission);
}

impl Stream {
    /// Streams until a close (returned, to be sent) or until the client is gone (`None`).
    async fn drive(&mut self, conn: &mut Connection) -> Option<Close> {
        let heartbeat = self.state.cfg.heartbeat();
        let batch = self.state.hub.config().write_batch;
        encode::retry(RETRY_MS, &mut self.out);
        encode::event_as(
            welcome_json(&self.state, &self.id, conn).as_bytes(),
            &mut self.out,
            self.protocol,
        );
        self.frames = 1;
        self.hand_off(false).await.ok()?;
        let ping = tokio::time::sleep(heartbeat);
        tokio::pin!(ping);
        let expiry = tokio::time::sleep_until(token_deadline(&self.state, &self.id));
        tokio::pin!(expiry);
        let mut kick = crate::http::dev::Kick::new(&self.state, &self.id.user);
        loop {
            tokio::select! {
                () = self.tx.closed() => return None,
                () = std::future::poll_fn(|cx| kick.poll_kicked(cx)) => {
                    return Some(Close {
                        code: crate::http::dev::KICK_CODE,
                        reason: "dev disconnect: reconnect and resume".to_owned(),
                    });
                }
                ready = conn.ready() => match ready {
                    Readiness::Frames => {
                        conn.drain_into(&mut self.raw, batch);
                        self.take_stamp(conn);
                        if let Some(close) = self.encode_raw() {
                            return Some(close);
                        }
                    }
                    Readiness::Closed(code) => {
                        while conn.drain_into(&mut self.raw, batch) > 0 {}
                        let found = self.encode_raw();
                        return Some(found.unwrap_or_else(|| Close {
                            code,
                            reason: engine_close_reason(code).to_owned(),
                        }));
                    }
                },
                () = &mut expiry => {
                    inc(&self.state.metrics.token_expired_closes);
                    return Some(Close { code: TOKEN_EXPIRED, reason: "token expired".to_owned() });
                }
                () = &mut ping => {
                    encode::comment("ping", &mut self.out);
                    ping.as_mut().reset(Instant::now() + heartbeat);
                }
            }
            if !self.out.is_empty() {
                self.hand_off(false).await.ok()?;
            }
        }
    }

    /// Encodes the drained frames into `out`; a close frame among them ends the stream (what
    /// follows it, if anything, is dropped: the engine queues nothing after a close).
    fn encode_raw(&mut self) -> Option<Close> {
        let mut found = None;
        for wire in self.raw.drain(..) {
            if found.is_some() {
                continue;
            }
            match encode::frame(&wire, &mut self.out, self.protocol) {
                Some(close) => found = Some(close),
                None => self.frames += 1,
            }
        }
        found
    }

    /// Keeps the oldest publish stamp of the frames waiting in `out`.
    fn take_stamp(&mut self, conn: &Connection) {
        if let Some(t) = conn.take_publish_stamp() {
            self.stamp = Some(self.stamp.map_or(t, |s| s.min(t)));
        }
    }

    /// Hands `out` to the body, bounded by the write timeout and by the end of a shutdown
    /// grace period. On failure `frames` keeps the count not handed over.
    async fn hand_off(&mut self, last: bool) -> Result<(), Gone> {
        let chunk = Chunk {
            bytes: self.out.split().freeze(),
            last,
        };
        let limit = self.state.cfg.limits.write_timeout();
        let sent = tokio::select! {
            // Biased, the hand-off first: one that completes at once never polls (or
            // registers with) the abandon signal.
            biased;
            r = tokio::time::timeout(limit, self.tx.send(chunk)) => r,
            () = abandoned(&mut self.abandon) => {
                self.abort_connection();
                return Err(Gone);
            }
        };
        match sent {
            Ok(Ok(())) => {
                let m = &self.state.metrics;
                m.frames_written.fetch_add(self.frames, Relaxed);
                self.frames = 0;
                if let Some(t) = self.stamp.take() {
                    let now = agentcast_engine::health::mono_us();
                    m.latency.observe_us(now.saturating_sub(t));
                }
                Ok(())
            }
            // The body was dropped: the client is gone.
            Ok(Err(_)) => Err(Gone),
            Err(_) => {
                inc(&self.state.metrics.write_timeouts);
                self.abort_connection();
                Err(Gone)
            }
        }
    }

    fn abort_connection(&self) {
        if let Some(a) = &self.abort {
            a.abort();
        }
    }
}

/// The response body: yields the task's chunks until the last one (or the task's end).
struct SseBody {
    rx: mpsc::Receiver<Chunk>,
    done: bool,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(chunk)) => {
                this.done = chunk.last;
                Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk.bytes))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
