//! `POST /api/v1/debug/fault`: injects a fault into a shard worker so operators can test
//! their alerting and the node's recovery. Exists only with `[health] fault_injection = true`
//! (404 otherwise) and requires the publish API key.
//!
//! Body: `{"shard": 0 | "user_id": "u1", "fault": "panic" | "stall" | "drop_deliveries",
//! "ms": 1500, "on": true}` — `ms` is the stall length, `on` switches `drop_deliveries`.
//! Answer: `200 {"shard": N, "fault": "..."}`.

use std::time::Duration;

use agentcast_engine::{Fault, FaultRefused, UserId};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::publish::authorized_body;
use super::{Body, error_response, json_response};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    shard: Option<usize>,
    user_id: Option<String>,
    fault: String,
    ms: Option<u64>,
    on: Option<bool>,
}

pub(crate) async fn fault(req: Request<Incoming>, state: &AppState) -> Response<Body> {
    if !state.cfg.health.fault_injection {
        return error_response(StatusCode::NOT_FOUND, "not found");
    }
    let body = match authorized_body(req, state).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let r: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("bad fault: {e}")),
    };
    let shard = match (r.shard, r.user_id.as_deref()) {
        (Some(s), None) => s,
        (None, Some(u)) => match UserId::new(u) {
            Ok(u) => state.hub.shard_of(&u),
            Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("user_id: {e}")),
        },
        _ => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "give exactly one of `shard` and `user_id`",
            );
        }
    };
    let fault = match r.fault.as_str() {
        "panic" => Fault::Panic,
        "stall" => Fault::Stall(Duration::from_millis(r.ms.unwrap_or(1_000).min(120_000))),
        "drop_deliveries" => Fault::DropDeliveries(r.on.unwrap_or(true)),
        other => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("fault: unknown `{other}` (panic, stall, drop_deliveries)"),
            );
        }
    };
    tracing::warn!(shard, fault = %r.fault, "injecting a fault on request");
    match state.hub.inject_fault(shard, fault) {
        Ok(()) => json_response(StatusCode::OK, &json!({"shard": shard, "fault": r.fault})),
        Err(FaultRefused::NoSuchShard) => {
            error_response(StatusCode::BAD_REQUEST, "shard: no such shard")
        }
        Err(e) => error_response(StatusCode::CONFLICT, &e.to_string()),
    }
}
