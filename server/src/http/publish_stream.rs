//! `POST /api/v1/publish/stream`: a long-lived publisher connection. The request body is
//! NDJSON (`Content-Type: application/x-ndjson`), one publish per line, each line exactly a
//! body of `POST /api/v1/publish` (see [`agentcast_engine::publish`]); the response is NDJSON
//! too, streamed while the request body is still arriving (HTTP/1.1 full duplex, chunked both
//! ways), one receipt per line, in line order:
//!
//! ```text
//! → {"user_id":"u1","type":"message_delta","run_id":"r1","data":{"message_id":"m1","delta":"Hel"}}
//! → {"user_id":"u1","type":"message_delta","run_id":"r1","data":"oops"
//! ← {"line":1,"seq":1764680000000001,"connections":2}
//! ← {"line":2,"error":{"status":400,"message":"malformed JSON: ..."}}
//! ← {"end":"eof","last_line":2,"published":1,"failed":1}
//! ```
//!
//! A receipt is the receipt of `/api/v1/publish` plus `"line": n` (1-based, empty lines
//! counted); an error receipt is `{"line": n, "error": {"status": S, "message": "..."}}` with
//! the status the single publish would have answered (400 bad JSON, UTF-8 or field; 413 a
//! line over `max_body_bytes`; 409 an idempotency key reused; 503 overloaded, shutting down,
//! broker unavailable). Every stream ends with one final line without `line`:
//! `{"end": E, "last_line": N, "published": P, "failed": F}`, where `E` is `eof` (the request
//! body ended and every line is answered), `shutdown`, `abuse` or `aborted` (the last three
//! with an `"error"` member); lines after `last_line` were not read and nothing of them was
//! published.
//!
//! The response head (`200`) is sent once the body's first chunk has arrived, or after
//! `handshake_timeout_ms` without one: hyper answers `Expect: 100-continue` with
//! `100 Continue` only while no response is under way, so a client that asks for it (curl
//! does with `-T`) gets it, instead of waiting out its own timeout.
//!
//! # Why NDJSON over HTTP, not a publisher WebSocket
//!
//! Any HTTP client can use it (`curl -N -T -`, a `requests` generator, `fetch` with a
//! stream body in Node), with the same API-key header, reverse proxies and load balancers as
//! the rest of the publish API; it needs no WebSocket client in the backend. Line framing is
//! trivial to produce and, being sans-IO ([`agentcast_engine::ndjson`]), fuzzed on its own
//! (`fuzz/fuzz_targets/ndjson_lines.rs`). Backpressure is TCP's, both ways.
//!
//! # Reading receipts while writing
//!
//! Receipts are the response: a client must read them while it writes lines, or it stops
//! the stream (below). A client that cannot (a naive `for line in lines: write(line)`) asks
//! for `?receipts=errors`: only error receipts are written, then the final line, so an
//! all-good stream writes one line in all; it stays safe as long as the error receipts fit
//! the socket buffers (and sustained errors close the stream anyway). `?receipts=all` is the
//! default; another value is refused with 400.
//!
//! # Limits and abuse
//!
//! Same API key as `/api/v1/publish` (401 before anything is read), same parsing and
//! validation per line, a line longer than `max_body_bytes` gets a 413 receipt and is skipped
//! up to its newline without being buffered; empty (or whitespace-only) lines are ignored.
//! More than `limits.abuse_max_errors` (default 20) consecutive bad lines (400, 409 or 413
//! receipts; a published line resets the count, a 503 does not count) end the stream: an
//! `"end": "abuse"` line, then the response ends and the connection closes. There is no body
//! timeout: a stream may stay idle between answers; it ends when the client ends its body,
//! or at shutdown. A `Content-Type` other than `application/x-ndjson`, `application/ndjson`
//! or `application/jsonl` is refused with 415 (none at all is accepted).
//!
//! # Backpressure and memory
//!
//! At most [`WINDOW`] publishes are in flight: the next line is taken from the body only
//! when the window has room, so a slow engine or broker slows the publisher through TCP.
//! Receipts wait in a queue of [`RESPONSE_CHUNKS`] chunks of at most [`FLUSH_BYTES`] bytes;
//! when the client stops reading them, that queue (and hyper's write buffer) fills, the
//! stream stops taking lines, and the client's writes block. So a stream holds at most the
//! window, one partial line (≤ `max_body_bytes`), one body chunk and those buffers.
//!
//! Every line goes through [`agentcast_engine::Broker::publish`] like a single publish (so
//! cluster mode works), in line order: lines without an `idempotency_key` are queued at once
//! and their receipts awaited in order; a line with a key waits for the window to empty and
//! is published alone (as in a batch, so a repeated key sees the first line's receipt).
//!
//! An overloaded engine (a shard's queue full) answers that line with a 503 error receipt and
//! the stream goes on, as `/api/v1/publish` answers 503: nothing of that line was published,
//! the client may send it again. The stream does not wait and retry on the client's behalf:
//! that would hide the overload and hold the receipts of the lines behind it hostage for an
//! unbounded time; the bounded window already slows the publisher down.
//!
//! # Shutdown
//!
//! When a graceful shutdown begins, each stream stops taking lines, awaits the receipts of
//! its in-flight publishes and writes them, then an `"end": "shutdown"` line, and ends; the
//! server waits for open streams (within `shutdown_grace_ms`) before it stops the hub. A
//! publish that got an ok receipt was queued before the hub's shutdown began, so it is
//! delivered like every receipted event (see `crate::server`). When the grace period is over
//! a stream that still cannot write (its client does not read) gives up.
//!
//! Counted in `agentcast_server_publish_streams_total`, `_publish_streams_open`,
//! `_publish_stream_lines_total`, `_publish_stream_published_total`,
//! `_publish_stream_refused_total` and `_publish_stream_abuse_closes_total` (and, like every
//! publish, in `publish_accepted` / `publish_rejected`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use agentcast_engine::ndjson::{Line, LineSplitter};
use agentcast_engine::{PublishRequest, Receipt};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::stream::{FuturesOrdered, StreamExt};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

use super::publish::{check_api_key, outcome, receipt_json};
use super::{Body, Refusal};
use crate::metrics::{ServerMetrics, inc};
use crate::state::AppState;

/// Publishes in flight per stream: the next line is read only below it.
pub(crate) const WINDOW: usize = 64;
/// Response chunks queued for hyper per stream.
pub(crate) const RESPONSE_CHUNKS: usize = 8;
/// Receipts are gathered into one chunk up to this size (or until the stream would wait).
pub(crate) const FLUSH_BYTES: usize = 16 * 1024;

/// Which receipts a stream writes (`?receipts=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receipts {
    /// One per line (the default).
    All,
    /// Error receipts only (and the final line).
    Errors,
}

/// Opens a stream. See the [module docs](self).
pub(crate) async fn open(req: Request<Incoming>, state: Arc<AppState>) -> Response<Body> {
    match accept(&req, &state) {
        Ok(mode) => {
            let (tx, rx) = mpsc::channel(RESPONSE_CHUNKS);
            let guard = StreamGuard::new(&state);
            let mut body = req.into_body();
            // The response head waits for the first body chunk (at most the handshake
            // timeout): hyper answers an `Expect: 100-continue` (curl sends one with `-T`)
            // with `100 Continue` only while no response is under way, and a client that
            // waits for it would otherwise wait for its own timeout (1 s for curl).
            let limit = state.cfg.limits.handshake_timeout();
            let first = tokio::time::timeout(limit, body.frame())
                .await
                .ok()
                .flatten();
            tokio::spawn(pump(state, body, first, mode, tx, guard));
            let mut r = Response::new(Body::streaming(ReceiptBody(rx)));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            r
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The checks before the stream starts: key, content type, query.
fn accept(req: &Request<Incoming>, state: &AppState) -> Result<Receipts, Refusal> {
    check_api_key(req, state)?;
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("").to_ascii_lowercase());
    if let Some(ct) = ct {
        let media = ct.split(';').next().unwrap_or("").trim();
        if !matches!(
            media,
            "application/x-ndjson" | "application/ndjson" | "application/jsonl"
        ) {
            inc(&state.metrics.publish_rejected);
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the stream body must be NDJSON: send `Content-Type: application/x-ndjson`",
            ));
        }
    }
    let mut mode = Receipts::All;
    for pair in req.uri().query().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("receipts", "all")) => mode = Receipts::All,
            Some(("receipts", "errors")) => mode = Receipts::Errors,
            Some(("receipts", _)) => {
                inc(&state.metrics.publish_rejected);
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "`receipts` must be `all` or `errors`",
                ));
            }
            _ => {}
        }
    }
    Ok(mode)
}

/// One line's answer, in line order.
struct Answer {
    line: u64,
    result: Result<Receipt, (StatusCode, String)>,
}

type Pending<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// Why a stream ended (the `end` of its final line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Eof,
    Shutdown,
    Abuse,
    Aborted,
}

/// What a stream counted, for its final line.
#[derive(Debug, Default)]
struct Tally {
    last_line: u64,
    published: u64,
    failed: u64,
    /// Bad lines (400, 409, 413) since the last published one.
    consecutive_bad: u32,
}

/// Reads lines, publishes them and sends receipts until the body ends, the server shuts
/// down, the client misbehaves or goes away.
async fn pump(
    state: Arc<AppState>,
    mut body: Incoming,
    first: Option<Result<Frame<Bytes>, hyper::Error>>,
    mode: Receipts,
    tx: mpsc::Sender<Bytes>,
    _guard: StreamGuard,
) {
    let m = &*state.metrics;
    let max = state.cfg.limits.max_body_bytes;
    let max_bad = state.cfg.limits.abuse_max_errors;
    let mut stop = state.stop.subscribe();
    let mut abandon = state.abandon.subscribe();
    let mut splitter = LineSplitter::new(max);
    let mut eof = false;
    let mut end: Option<End> = None;
    match first {
        Some(Ok(f)) => {
            if let Ok(data) = f.into_data() {
                splitter.push(data);
            }
        }
        Some(Err(_)) => end = Some(End::Aborted),
        None => {}
    }
    let mut window: FuturesOrdered<Pending<'_>> = FuturesOrdered::new();
    let mut tally = Tally::default();
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    // A line with an idempotency key, parsed, waiting for the window to empty.
    let mut held: Option<(u64, PublishRequest)> = None;
    // A keyed line is in the window: read nothing until it is answered.
    let mut serial = false;
    loop {
        // Receipts already answered, without waiting.
        while let Some(Some(a)) = window.next().now_or_never() {
            if let Some(e) = record(&mut tally, &mut out, mode, a, max_bad, m) {
                end.get_or_insert(e);
            }
        }
        if window.is_empty() {
            serial = false;
        }
        if out.len() >= FLUSH_BYTES && !send(&tx, &mut out, &mut abandon).await {
            return;
        }
        if end.is_none() && *stop.borrow() {
            end = Some(End::Shutdown);
        }
        if end.is_some() {
            if window.is_empty() {
                break;
            }
        } else if window.len() < WINDOW && !serial {
            if let Some((line, r)) = held.take() {
                if window.is_empty() {
                    window.push_back(publish(&state, line, r));
                    serial = true;
                } else {
                    held = Some((line, r));
                }
                // The window is busy: wait below.
            } else {
                let next = if eof {
                    splitter.finish()
                } else {
                    splitter.next_line()
                };
                if let Some(line) = next {
                    inc(&m.publish_stream_lines);
                    match parse(line, max, m) {
                        Ok((line, r)) if r.idempotency_key.is_some() => held = Some((line, r)),
                        Ok((line, r)) => window.push_back(publish(&state, line, r)),
                        Err(answer) => window.push_back(Box::pin(std::future::ready(answer))),
                    }
                    continue;
                }
                if eof && window.is_empty() {
                    end = Some(End::Eof);
                    break;
                }
            }
        }
        // About to wait: hand what is written to hyper first.
        if !out.is_empty() && !send(&tx, &mut out, &mut abandon).await {
            return;
        }
        let reading = end.is_none() && !eof && !serial && held.is_none() && window.len() < WINDOW;
        tokio::select! {
            Some(a) = window.next(), if !window.is_empty() => {
                if let Some(e) = record(&mut tally, &mut out, mode, a, max_bad, m) {
                    end.get_or_insert(e);
                }
            }
            frame = body.frame(), if reading => match frame {
                None => eof = true,
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        splitter.push(data);
                    }
                }
                Some(Err(_)) => end = Some(End::Aborted),
            },
            _ = stop.changed(), if end.is_none() => {}
        }
    }
    let end = end.unwrap_or(End::Eof);
    if end == End::Abuse {
        inc(&m.publish_stream_abuse_closes);
    }
    write_line(&mut out, &final_line(end, &tally, max_bad));
    let _ = send(&tx, &mut out, &mut abandon).await;
}

/// Parses one line into a request, or its error answer.
fn parse(line: Line, max: usize, m: &ServerMetrics) -> Result<(u64, PublishRequest), Answer> {
    match line {
        Line::Oversize { number } => {
            inc(&m.publish_rejected);
            inc(&m.publish_too_large);
            Err(Answer {
                line: number,
                result: Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("line exceeds the limit of {max} bytes; skipped to its end"),
                )),
            })
        }
        Line::Complete { number, bytes } => match PublishRequest::parse(&bytes) {
            Ok(r) => Ok((number, r)),
            Err(e) => {
                inc(&m.publish_rejected);
                Err(Answer {
                    line: number,
                    result: Err((StatusCode::BAD_REQUEST, e.to_string())),
                })
            }
        },
    }
}

/// Queues one publish (at once: see [`agentcast_engine::Broker::publish`]) and answers when
/// the broker does, counted by [`outcome`] like a single publish.
fn publish(state: &AppState, line: u64, r: PublishRequest) -> Pending<'_> {
    let f = state.broker.publish(r.target, r.event, r.idempotency_key);
    Box::pin(async move {
        Answer {
            line,
            result: outcome(state, f.await),
        }
    })
}

/// Counts one answer and writes its receipt (all of them, or errors only); `Some(Abuse)` when
/// it is one bad line too many.
fn record(
    tally: &mut Tally,
    out: &mut Vec<u8>,
    mode: Receipts,
    a: Answer,
    max_bad: u32,
    m: &ServerMetrics,
) -> Option<End> {
    tally.last_line = tally.last_line.max(a.line);
    match a.result {
        Ok(receipt) => {
            tally.published += 1;
            tally.consecutive_bad = 0;
            inc(&m.publish_stream_published);
            if mode == Receipts::All {
                let mut v = receipt_json(receipt);
                if let Some(o) = v.as_object_mut() {
                    o.insert("line".to_owned(), a.line.into());
                }
                write_line(out, &v);
            }
            None
        }
        Err((status, message)) => {
            tally.failed += 1;
            inc(&m.publish_stream_refused);
            write_line(
                out,
                &json!({"line": a.line, "error": {"status": status.as_u16(), "message": message}}),
            );
            // An unavailable node is not the publisher's fault.
            if status == StatusCode::SERVICE_UNAVAILABLE {
                return None;
            }
            tally.consecutive_bad = tally.consecutive_bad.saturating_add(1);
            (tally.consecutive_bad > max_bad).then_some(End::Abuse)
        }
    }
}

/// The last line of a stream.
fn final_line(end: End, t: &Tally, max_bad: u32) -> Value {
    let mut v = json!({
        "end": match end {
            End::Eof => "eof",
            End::Shutdown => "shutdown",
            End::Abuse => "abuse",
            End::Aborted => "aborted",
        },
        "last_line": t.last_line,
        "published": t.published,
        "failed": t.failed,
    });
    let error = match end {
        End::Eof => return v,
        End::Shutdown => (
            503,
            "server is shutting down: lines after last_line were not read; send them again"
                .to_owned(),
        ),
        End::Abuse => (
            400,
            format!("more than {max_bad} consecutive bad lines: the stream is closed"),
        ),
        End::Aborted => (400, "could not read the request body".to_owned()),
    };
    v["error"] = json!({"status": error.0, "message": error.1});
    v
}

/// Appends `v` and a newline.
fn write_line(out: &mut Vec<u8>, v: &Value) {
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
    out.push(b'\n');
}

/// Hands `out` to the response; waits while the response queue is full (the client is not
/// reading), unless the shutdown grace period ends. `false`: the stream must end (client gone,
/// or given up).
async fn send(
    tx: &mpsc::Sender<Bytes>,
    out: &mut Vec<u8>,
    abandon: &mut watch::Receiver<bool>,
) -> bool {
    let chunk = Bytes::from(std::mem::replace(out, Vec::with_capacity(1024)));
    if *abandon.borrow() {
        return tx.try_send(chunk).is_ok();
    }
    tokio::select! {
        sent = tx.send(chunk) => sent.is_ok(),
        _ = abandon.wait_for(|a| *a) => false,
    }
}

/// The response body: the receipts [`pump`] sends, as they come; ends when it ends.
struct ReceiptBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ReceiptBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// The open streams of a node, for metrics and for graceful shutdown to wait on.
#[derive(Debug, Default)]
pub(crate) struct OpenStreams {
    /// Streams open: incremented by [`StreamGuard::new`], decremented by its drop. `AcqRel`
    /// there and `Acquire` in [`OpenStreams::wait_idle`]: a waiter that reads 0 comes after
    /// every stream's end (a plain count would do too; the pairing costs nothing here).
    open: AtomicUsize,
    idle: Notify,
}

impl OpenStreams {
    /// Waits until no stream is open.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a stream ending in between still wakes us.
            notified.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held by a stream's task: counts it open.
struct StreamGuard(Arc<AppState>);

impl StreamGuard {
    fn new(state: &Arc<AppState>) -> StreamGuard {
        inc(&state.metrics.publish_streams);
        inc(&state.metrics.publish_streams_open);
        state.streams.open.fetch_add(1, Ordering::AcqRel);
        StreamGuard(Arc::clone(state))
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let s = &self.0;
        s.metrics
            .publish_streams_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if s.streams.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.streams.idle.notify_waiters();
        }
    }
}
