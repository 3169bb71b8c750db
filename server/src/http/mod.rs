//! HTTP routing on the one port: every request is answered here, except `GET /ws`, which
//! the [`crate::ws`] handshake upgrades.
//!
//! | route | answer |
//! |---|---|
//! | `GET /ws` | WebSocket upgrade (see [`crate::ws::handshake`](crate::ws)) |
//! | `POST /api/v1/publish`, `POST /api/v1/publish/batch` | see [`publish`] |
//! | `GET /healthz` | 200 `{"status":"ok"}` while the process runs |
//! | `GET /readyz` | 200 with component states when healthy or degraded; 503 when failed or shutting down |
//! | `GET /metrics` | Prometheus text |
//! | `GET /api/v1/stats` | JSON statistics |
//! | `POST /api/v1/debug/fault` | fault injection, only when enabled (see [`debug`]) |
//! | `GET /`, `GET /dashboard` | placeholder pages |
//!
//! Unknown paths get 404 and a known path with the wrong method 405, both with a JSON
//! `{"error": ...}` body.

pub(crate) mod debug;
pub(crate) mod ops;
pub(crate) mod publish;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::metrics::inc;
use crate::state::AppState;

/// The body of every response.
pub(crate) type Body = Full<Bytes>;

/// Routes one request. See the [module docs](self).
pub(crate) async fn route(req: Request<Incoming>, state: Arc<AppState>) -> Response<Body> {
    inc(&state.metrics.http_requests);
    let path = req.uri().path();
    match (req.method(), path) {
        (_, "/ws") => crate::ws::handshake::upgrade(req, state).await,
        (&Method::POST, "/api/v1/publish") => publish::single(req, &state).await,
        (&Method::POST, "/api/v1/publish/batch") => publish::batch(req, &state).await,
        (&Method::GET, "/healthz") => ops::healthz(),
        (&Method::GET, "/readyz") => ops::readyz(&state),
        (&Method::GET, "/metrics") => ops::metrics(&state),
        (&Method::GET, "/api/v1/stats") => ops::stats(&state),
        (&Method::POST, "/api/v1/debug/fault") => debug::fault(req, &state).await,
        (&Method::GET, "/" | "/dashboard") => ops::placeholder(path),
        (
            _,
            "/api/v1/publish"
            | "/api/v1/publish/batch"
            | "/healthz"
            | "/readyz"
            | "/metrics"
            | "/api/v1/stats"
            | "/"
            | "/dashboard",
        ) => error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => error_response(StatusCode::NOT_FOUND, "not found"),
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
