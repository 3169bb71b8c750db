//! Operations endpoints: liveness, readiness, Prometheus metrics, JSON stats. (The pages of
//! `/` and `/dashboard` are in [`super::assets`]; the stats stream in [`super::stats_stream`].)
//!
//! Readiness is 200 while the node serves and 503 once a graceful shutdown began (so load
//! balancers stop routing here). The engine does not report component health yet; when it
//! does, `degraded` stays 200 and `failed` turns 503.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::json;

use super::{Body, json_response};
use crate::metrics;
use crate::state::AppState;

pub(crate) fn healthz() -> Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub(crate) fn readyz(state: &AppState) -> Response<Body> {
    if state.is_shutting_down() {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "shutting_down"}),
        )
    } else {
        json_response(StatusCode::OK, &json!({"status": "ready"}))
    }
}

pub(crate) fn metrics(state: &AppState) -> Response<Body> {
    let text = metrics::render_prometheus(&state.metrics, &state.hub.stats());
    let mut r = Response::new(Body::new(Bytes::from(text)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

pub(crate) fn stats(state: &AppState) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &metrics::render_json(&state.metrics, &state.hub.stats()),
    )
}
