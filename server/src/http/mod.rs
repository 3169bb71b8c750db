//! HTTP routing on the one port: every request is answered here, except `GET /ws`, which
//! the [`crate::ws`] handshake upgrades, and `GET /sse`, whose body `crate::sse` streams.
//!
//! | route | answer |
//! |---|---|
//! | `GET /ws` | WebSocket upgrade (see [`crate::ws::handshake`](crate::ws)) |
//! | `GET /sse` | server-sent events, the second client transport (see `crate::sse`) |
//! | `POST /api/v1/ack` | a client's ack, authenticated by its JWT (see [`ack`]) |
//! | `POST /api/v1/publish`, `POST /api/v1/publish/batch` | see [`publish`] |
//! | `POST /api/v1/publish/stream` | NDJSON in, NDJSON receipts out, full duplex: see [`publish_stream`] |
//! | `GET /healthz` | 200 `{"status":"ok"}` while the process runs |
//! | `GET /readyz` | 200 with component states when healthy or degraded; 503 when failed or shutting down |
//! | `GET /metrics` | Prometheus text |
//! | `GET /api/v1/stats` | JSON statistics |
//! | `POST /api/v1/debug/fault` | fault injection, only when enabled (see [`debug`]) |
//! | `GET /api/v1/stats/stream` | the same, once a second, as server-sent events (see [`stats_stream`]) |
//! | `GET /api/v1/openapi.json` | the OpenAPI 3.1 document of this API, `docs/openapi.json` (see [`assets::OPENAPI`]) |
//! | `GET /`, `GET /dashboard`, `GET /client.js`, page assets | compiled-in web assets (see [`assets`]) |
//! | `/api/v1/dev/*` | dev mode only, else 404 (see [`dev`]) |
//!
//! Unknown paths get 404 and a known path with the wrong method 405 (with `Allow` naming the
//! method it takes), both with a JSON `{"error": ...}` body.

pub(crate) mod ack;
pub(crate) mod assets;
pub(crate) mod debug;
pub(crate) mod dev;
pub(crate) mod ops;
pub(crate) mod publish;
pub(crate) mod publish_stream;
pub(crate) mod stats_stream;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::metrics::inc;
use crate::state::AppState;

/// The body of every response: a whole buffer, or (for server-sent events) a stream.
pub(crate) struct Body(BodyKind);

enum BodyKind {
    Full(Full<Bytes>),
    Stream(Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = Infallible> + Send>>),
}

impl Body {
    /// A body of `bytes`, sent at once.
    pub(crate) fn new(bytes: Bytes) -> Body {
        Body(BodyKind::Full(Full::new(bytes)))
    }

    /// Whether the body is a stream (server-sent events) rather than a whole buffer.
    pub(crate) fn is_streaming(&self) -> bool {
        matches!(self.0, BodyKind::Stream(_))
    }

    /// A body produced by `stream` as it goes (chunked).
    pub(crate) fn streaming(
        stream: impl hyper::body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
    ) -> Body {
        Body(BodyKind::Stream(Box::pin(stream)))
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            BodyKind::Full(_) => "Body::Full",
            BodyKind::Stream(_) => "Body::Stream",
        })
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            BodyKind::Full(b) => Pin::new(b).poll_frame(cx),
            BodyKind::Stream(s) => s.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Full(b) => b.is_end_stream(),
            BodyKind::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match &self.0 {
            BodyKind::Full(b) => b.size_hint(),
            BodyKind::Stream(s) => s.size_hint(),
        }
    }
}

/// Routes one request. See the [module docs](self).
pub(crate) async fn route(req: Request<Incoming>, state: Arc<AppState>) -> Response<Body> {
    inc(&state.metrics.http_requests);
    let path = req.uri().path();
    match (req.method(), path) {
        (_, "/ws") => crate::ws::handshake::upgrade(req, state).await,
        (_, "/sse") => crate::sse::open(req, state).await,
        (&Method::POST, "/api/v1/ack") => ack::ack(req, &state).await,
        (&Method::POST, "/api/v1/publish") => publish::single(req, &state).await,
        (&Method::POST, "/api/v1/publish/batch") => publish::batch(req, &state).await,
        (&Method::POST, "/api/v1/publish/stream") => publish_stream::open(req, state).await,
        (&Method::GET, "/healthz") => ops::healthz(),
        (&Method::GET, "/readyz") => ops::readyz(&state),
        (&Method::GET, "/metrics") => ops::metrics(&state),
        (&Method::GET, "/api/v1/stats") => ops::stats(&state),
        (&Method::POST, "/api/v1/debug/fault") => debug::fault(req, &state).await,
        (&Method::GET, "/api/v1/stats/stream") => stats_stream::open(state),
        (&Method::GET, "/api/v1/openapi.json") => assets::serve_asset(&req, &assets::OPENAPI),
        (_, p) if p.starts_with("/api/v1/dev/") => dev::route(req, &state).await,
        (&Method::GET, p) if assets::find(p).is_some() => assets::serve(&req),
        (_, p) => match allowed_method(p) {
            Some(allow) => Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                .with_header(header::ALLOW, allow)
                .into_response(),
            None => error_response(StatusCode::NOT_FOUND, "not found"),
        },
    }
}

/// The one method a known path takes, for the `Allow` header of its 405 (RFC 9110 §15.5.6:
/// a 405 must list the methods the resource supports); `None` for an unknown path. `/ws`,
/// `/sse` and `/api/v1/dev/*` answer their own 405s; `/api/v1/debug/fault` is unknown (404)
/// to other methods, as it is when fault injection is off.
fn allowed_method(path: &str) -> Option<&'static str> {
    match path {
        "/api/v1/publish" | "/api/v1/publish/batch" | "/api/v1/ack" | "/api/v1/publish/stream" => {
            Some("POST")
        }
        "/healthz"
        | "/readyz"
        | "/metrics"
        | "/api/v1/stats"
        | "/api/v1/stats/stream"
        | "/api/v1/openapi.json" => Some("GET"),
        p if assets::find(p).is_some() => Some("GET"),
        _ => None,
    }
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `{"error": message}` with `status`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &serde_json::json!({ "error": message }))
}

/// A refusal decided before any work: turned into an `{"error": ...}` response. Kept small so
/// `Result<_, Refusal>` stays cheap to return.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// An extra header (`Allow`, `Sec-WebSocket-Version`).
    pub(crate) header: Option<(header::HeaderName, &'static str)>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            header: None,
        }
    }

    pub(crate) fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Refusal {
        self.header = Some((name, value));
        self
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        let mut r = error_response(self.status, &self.message);
        if let Some((name, value)) = self.header {
            r.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        r
    }
}
