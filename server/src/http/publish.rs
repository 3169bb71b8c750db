//! The publish API.
//!
//! - `POST /api/v1/publish`: one request (see [`agentcast_engine::publish`] for the body) →
//!   `200 {"seq": N | null, "connections": K}` (`seq` is null for channel and broadcast
//!   events). A user with no connection still gets the event: it waits in the user's history.
//! - `POST /api/v1/publish/batch`: a JSON array of requests, published in order →
//!   `200 [{"seq": .., "connections": ..} | {"error": "..."}, ...]`, one result per item; a
//!   bad item fails alone.
//!
//! Refusals change nothing: missing or wrong `Authorization: Bearer <api key>` → 401; a body
//! over `max_body_bytes` or a batch over `max_batch_items` → 413; malformed JSON or a bad field
//! → 400 `{"error": "..."}` naming the field; a body not received within the handshake
//! timeout → 408; the hub shutting down → 503; cluster mode, Redis unreachable → 503; a shard's command queue full (the engine
//! overloaded, `command_queue_capacity`) → 503 `{"error": "..."}`, counted in
//! `agentcast_publish_overloaded_total`.
//!
//! An `idempotency_key` makes a publish repeatable: see [`agentcast_engine::idempotency`]
//! (embedded) and `docs/cluster.md` (cluster-wide, in Redis). The same key
//! with a different request is refused with `409 {"error": "idempotency_key `k` reused with
//! a different request"}` and publishes nothing; in a batch, that item alone fails with the
//! same `{"error": ...}`.

use agentcast_engine::{
    BrokerError, BrokerFuture, ParseError, PublishError, PublishRequest, Published, Receipt,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{Body, Refusal, error_response, json_response};
use crate::metrics::inc;
use crate::state::AppState;

/// `POST /api/v1/publish`.
pub(crate) async fn single(req: Request<Incoming>, state: &AppState) -> Response<Body> {
    let body = match authorized_body(req, state).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let request = match PublishRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            inc(&state.metrics.publish_rejected);
            return error_response(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let published = state
        .broker
        .publish(request.target, request.event, request.idempotency_key)
        .await;
    match outcome(state, published) {
        Ok(receipt) => json_response(StatusCode::OK, &receipt_json(receipt)),
        Err((status, error)) => error_response(status, &error),
    }
}

/// `POST /api/v1/publish/batch`.
pub(crate) async fn batch(req: Request<Incoming>, state: &AppState) -> Response<Body> {
    let body = match authorized_body(req, state).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let items = match PublishRequest::parse_batch(&body, state.cfg.limits.max_batch_items) {
        Ok(items) => items,
        Err(e @ ParseError::BatchTooLarge { .. }) => {
            inc(&state.metrics.publish_rejected);
            return error_response(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string());
        }
        Err(e) => {
            inc(&state.metrics.publish_rejected);
            return error_response(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    // Items without a key are all queued first and their receipts awaited after (the
    // in-process broker queues a publish when asked, so a batch costs one round trip to the
    // shards rather than one per item); keyed items are awaited in place so a repeated key
    // within the batch sees the first item's receipt.
    enum Pending<'a> {
        Queued(BrokerFuture<'a, Published>),
        Done(Result<Published, BrokerError>),
        Refused(ParseError),
    }
    let mut pending = Vec::with_capacity(items.len());
    for item in items {
        pending.push(match item {
            Err(e) => Pending::Refused(e),
            Ok(r) => {
                let keyed = r.idempotency_key.is_some();
                let f = state.broker.publish(r.target, r.event, r.idempotency_key);
                if keyed {
                    Pending::Done(f.await)
                } else {
                    Pending::Queued(f)
                }
            }
        });
    }
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        let published = match p {
            Pending::Queued(f) => f.await,
            Pending::Done(r) => r,
            Pending::Refused(e) => {
                inc(&state.metrics.publish_rejected);
                results.push(json!({"error": e.to_string()}));
                continue;
            }
        };
        results.push(match outcome(state, published) {
            Ok(receipt) => receipt_json(receipt),
            Err((_, error)) => json!({"error": error}),
        });
    }
    json_response(StatusCode::OK, &Value::Array(results))
}

/// Checks `Authorization: Bearer <api key>` (every publish route): 401 when missing or wrong,
/// counted in `publish_rejected`.
pub(crate) fn check_api_key<B>(req: &Request<B>, state: &AppState) -> Result<(), Refusal> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim());
    if presented.is_some_and(|k| state.auth.check_api_key(k.as_bytes())) {
        return Ok(());
    }
    inc(&state.metrics.publish_rejected);
    Err(Refusal::new(
        StatusCode::UNAUTHORIZED,
        "missing or invalid API key: send `Authorization: Bearer <api key>`",
    ))
}

/// Counts a publish's outcome and turns it into a receipt or a status and error text.
pub(crate) fn outcome(
    state: &AppState,
    published: Result<Published, BrokerError>,
) -> Result<Receipt, (StatusCode, String)> {
    let m = &state.metrics;
    match published {
        Ok(p) => {
            inc(&m.publish_accepted);
            if p.replayed {
                inc(&m.publish_idempotent_replays);
            }
            Ok(p.receipt)
        }
        Err(BrokerError::Refused(e)) => {
            Err((StatusCode::SERVICE_UNAVAILABLE, refusal_text(e).into()))
        }
        Err(e @ BrokerError::KeyReused(_)) => {
            inc(&m.publish_rejected);
            inc(&m.publish_idempotency_conflicts);
            Err((StatusCode::CONFLICT, e.to_string()))
        }
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// The `error` text of a publish the engine refused (both answered 503).
fn refusal_text(e: PublishError) -> &'static str {
    match e {
        PublishError::Overloaded { .. } => {
            "server overloaded: the event queue is full; nothing was published, retry later"
        }
        _ => "server is shutting down",
    }
}

/// The receipt of one publish: `{"seq": N | null, "connections": K}`.
pub(crate) fn receipt_json(r: Receipt) -> Value {
    json!({"seq": r.seq, "connections": r.connections})
}

/// Checks the API key, then reads the body within the size and time limits.
pub(crate) async fn authorized_body(
    req: Request<Incoming>,
    state: &AppState,
) -> Result<Bytes, Refusal> {
    check_api_key(&req, state)?;
    let m = &state.metrics;
    let max = state.cfg.limits.max_body_bytes;
    let too_large = || {
        inc(&m.publish_rejected);
        inc(&m.publish_too_large);
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body exceeds the limit of {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let limit = state.cfg.limits.handshake_timeout();
    let read = tokio::time::timeout(limit, Limited::new(req.into_body(), max).collect()).await;
    match read {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => {
            inc(&m.publish_rejected);
            Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "could not read the request body",
            ))
        }
        Err(_) => {
            inc(&m.publish_rejected);
            Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            ))
        }
    }
}
