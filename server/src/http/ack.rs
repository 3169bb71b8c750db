//! `POST /api/v1/ack`: acknowledgements of a client whose transport has no client → server
//! direction (server-sent events), authenticated by the client's own JWT.
//!
//! ```text
//! POST /api/v1/ack
//! Authorization: Bearer <the client's JWT>
//! Content-Type: application/json
//!
//! {"seq": 42}
//! ```
//!
//! answers `200 {"acked": 42}`: every event of the token's user up to seq 42 is confirmed, as
//! a WebSocket `{"type":"ack","seq":42}` confirms it (a later connect without `last_seq` or
//! `Last-Event-ID` starts after it, and critical events up to it stop being tracked for
//! escalation). A seq past the user's latest counts as the latest.
//!
//! # Why a user-level ack
//!
//! A WebSocket ack travels on the connection it confirms. Here the ack is its own request,
//! possibly on another TCP connection or another node than the stream, so it is applied to
//! the user, not to a connection: [`Hub::ack`](agentcast_engine::Hub::ack) moves the home
//! shard's cursor (the one a WebSocket ack moves through its connection) and
//! [`Broker::ack`](agentcast_engine::Broker::ack) the cluster-wide one in cluster mode. No
//! open stream is needed, so a client may ack after its stream dropped. Both are
//! fire-and-forget: the `200` means the ack is queued (in cluster mode a connect on another
//! node right after it may still replay what it confirms, as with a WebSocket ack).
//!
//! # Refusals (JSON `{"error": ...}`)
//!
//! | cause | status |
//! |---|---|
//! | missing, malformed, expired or wrongly signed token (the `/ws` rules) | 401 |
//! | body not a JSON object with a non-negative integer `seq` | 400 |
//! | body over [`MAX_ACK_BODY`] bytes | 413 |
//! | body not received within `handshake_timeout_ms` | 408 |
//! | the engine is shut down | 503 |

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::{Body, Refusal, error_response, json_response};
use crate::client::request::bearer;
use crate::metrics::inc;
use crate::state::AppState;

/// Largest ack body read: `{"seq": 18446744073709551615}` with room for whitespace.
pub(crate) const MAX_ACK_BODY: usize = 1024;

/// Handles `POST /api/v1/ack`. See the [module docs](self).
pub(crate) async fn ack(req: Request<Incoming>, state: &Arc<AppState>) -> Response<Body> {
    let token = bearer(req.headers()).unwrap_or_default().to_owned();
    let identity = match state.auth.verify(&token) {
        Ok(id) => id,
        Err(e) => return error_response(StatusCode::UNAUTHORIZED, &e.to_string()),
    };
    let body = match read_body(req, state).await {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(),
    };
    let seq = match parse_ack(&body) {
        Ok(seq) => seq,
        Err(refusal) => return refusal.into_response(),
    };
    if state.hub.ack(&identity.user, seq).is_err() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    state.broker.ack(&identity.user, seq);
    inc(&state.metrics.http_acks);
    json_response(StatusCode::OK, &json!({ "acked": seq }))
}

/// The seq of an ack body. Sans-IO, so it is fuzzed with the SSE request
/// (`fuzz/fuzz_targets/sse_request.rs`).
/// Other members are ignored (a client may send its WebSocket ack as it is).
pub(crate) fn parse_ack(body: &[u8]) -> Result<u64, Refusal> {
    let refuse = |why: &str| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be {{\"seq\": N}} with N a non-negative integer: {why}"),
        )
    };
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| refuse(&e.to_string()))?;
    let obj = v.as_object().ok_or_else(|| refuse("not a JSON object"))?;
    match obj.get("seq") {
        None => Err(refuse("missing field `seq`")),
        Some(s) => s
            .as_u64()
            .ok_or_else(|| refuse("`seq` is not a non-negative integer")),
    }
}

async fn read_body(req: Request<Incoming>, state: &AppState) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body exceeds the limit of {MAX_ACK_BODY} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_ACK_BODY as u64) {
        return Err(too_large());
    }
    let limit = state.cfg.limits.handshake_timeout();
    let read = Limited::new(req.into_body(), MAX_ACK_BODY).collect();
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "could not read the request body",
        )),
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_body_is_an_object_with_a_seq() {
        assert_eq!(parse_ack(br#"{"seq": 7}"#).ok(), Some(7));
        assert_eq!(parse_ack(br#"{"type":"ack","seq":0}"#).ok(), Some(0));
        for bad in [
            &b""[..],
            b"7",
            b"[1]",
            b"{}",
            br#"{"seq":-1}"#,
            br#"{"seq":1.5}"#,
            br#"{"seq":"1"}"#,
            br#"{"seq":18446744073709551616}"#,
            b"\xff",
        ] {
            let e = parse_ack(bad).expect_err("refused");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }
}
