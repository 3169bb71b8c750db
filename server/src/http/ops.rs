//! Operations endpoints: liveness, readiness, Prometheus metrics, JSON stats. (The pages of
//! `/` and `/dashboard` are in [`super::assets`]; the stats stream in [`super::stats_stream`].)
//!
//! Readiness reports the engine's health state machine (see `agentcast_engine::health`):
//! 200 with every component's state while the node is healthy or degraded, 503 when it is
//! failed or a graceful shutdown began (so load balancers stop routing here). A component
//! with a choice of implementation carries a `kind` (`"broker": {"kind": "in-process", …}`).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::json;

use agentcast_engine::{HealthReport, HealthState};

use super::{Body, json_response};
use crate::metrics;
use crate::state::AppState;

pub(crate) fn healthz() -> Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub(crate) fn readyz(state: &AppState) -> Response<Body> {
    let report = state.hub.health();
    let body = health_json(&report, state.is_shutting_down());
    let status = if state.is_shutting_down() || report.status == HealthState::Failed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(status, &body)
}

/// The `/readyz` body: the node's state and every component's.
pub(crate) fn health_json(r: &HealthReport, shutting_down: bool) -> serde_json::Value {
    let mut components = serde_json::Map::new();
    for c in &r.components {
        let mut since = bytes::BytesMut::new();
        agentcast_engine::frame::write_rfc3339_ms(&mut since, c.since_ms);
        let mut v = json!({
            "state": c.state.as_str(),
            "reason": c.reason,
            "since": String::from_utf8_lossy(&since),
            "recovery_attempts": c.recovery_attempts,
            "transitions": c.transitions,
        });
        if let Some(kind) = c.kind {
            // `broker` says what implements it: "in-process" in the embedded mode.
            v["kind"] = json!(kind);
        }
        components.insert(c.name.clone(), v);
    }
    json!({
        "status": if shutting_down { "shutting_down" } else { r.status.as_str() },
        "components": components,
        "transitions": r.transitions,
        "canary": {"sent": r.canary_sent, "received": r.canary_received},
    })
}

pub(crate) fn metrics(state: &AppState) -> Response<Body> {
    let text = crate::exposition::render(&state.metrics, state.hub.stats(), state.hub.health());
    let mut r = Response::new(Body::new(Bytes::from(text)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

pub(crate) fn stats(state: &AppState) -> Response<Body> {
    let mut v = metrics::render_json(&state.metrics, &state.hub.stats());
    v["mode"] = match &state.cluster {
        Some(c) => serde_json::json!({"kind": "cluster", "node": c.node()}),
        None => serde_json::json!({"kind": "embedded"}),
    };
    json_response(StatusCode::OK, &v)
}
