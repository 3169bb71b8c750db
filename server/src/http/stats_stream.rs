//! `GET /api/v1/stats/stream`: the JSON of `GET /api/v1/stats` as server-sent events, one
//! snapshot per second, for the live dashboard.
//!
//! Each snapshot is one `data:` line holding the stats object with an extra `ts_ms` field
//! (milliseconds since the Unix epoch, when it was taken); the first is sent at once. The
//! stream starts with `retry: 2000` so an `EventSource` that loses it reconnects after 2 s.
//!
//! # Lag and close
//!
//! A snapshot is computed only when the previous one was taken by the socket: a client that
//! reads slowly gets fewer snapshots (missed ticks are skipped, never queued), so a stream
//! holds at most one snapshot in memory. When a graceful shutdown begins, every stream ends
//! at its next tick (within a second), so an open dashboard never holds the shutdown up; the
//! browser's `EventSource` then retries and is refused once the listener is gone.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderValue};
use hyper::body::Frame;
use tokio::time::{Interval, MissedTickBehavior};

use super::Body;
use crate::metrics;
use crate::state::AppState;

/// Time between two snapshots.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);

/// Opens a stream. See the [module docs](self).
pub(crate) fn open(state: Arc<AppState>) -> Response<Body> {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut r = Response::new(Body::streaming(StatsStream {
        state,
        tick,
        started: false,
    }));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells a buffering reverse proxy (nginx) to pass each event on at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// The body of one stream: a frame per tick until shutdown.
struct StatsStream {
    state: Arc<AppState>,
    tick: Interval,
    /// Whether the `retry:` preamble was sent.
    started: bool,
}

impl StatsStream {
    /// One `data:` event with the current statistics.
    fn snapshot(&self) -> Bytes {
        let mut v = metrics::render_json(&self.state.metrics, &self.state.hub.stats());
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if let Some(obj) = v.as_object_mut() {
            obj.insert("ts_ms".to_owned(), ts_ms.into());
        }
        let prefix = if self.started { "" } else { "retry: 2000\n" };
        Bytes::from(format!("{prefix}data: {v}\n\n"))
    }
}

impl hyper::body::Body for StatsStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.state.is_shutting_down() {
            return Poll::Ready(None);
        }
        match this.tick.poll_tick(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                if this.state.is_shutting_down() {
                    return Poll::Ready(None);
                }
                let data = this.snapshot();
                this.started = true;
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
        }
    }
}
