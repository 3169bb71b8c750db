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
//! timeout → 408; the hub shutting down → 503; a shard's command queue full (the engine
//! overloaded, `command_queue_capacity`) → 503 `{"error": "..."}`, counted in
//! `agentcast_publish_overloaded_total`.
//!
//! An `idempotency_key` makes a publish repeatable: see [`crate::idempotency`]. The same key
//! with a different request is refused with `409 {"error": "idempotency_key `k` reused with
//! a different request"}` and publishes nothing; in a batch, that item alone fails with the
//! same `{"error": ...}`.

use agentcast_engine::{
    HubClosed, ParseError, PublishError, PublishReply, PublishRequest, Receipt, Target,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{Body, Refusal, error_response, json_response};
use crate::idempotency::KeyReused;
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
    match publish_one(state, request).await {
        Ok(receipt) => {
            inc(&state.metrics.publish_accepted);
            json_response(StatusCode::OK, &receipt_json(receipt))
        }
        Err(NotPublished::Engine(e)) => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, refusal_text(e))
        }
        Err(NotPublished::KeyReused(e)) => {
            inc(&state.metrics.publish_rejected);
            inc(&state.metrics.publish_idempotency_conflicts);
            error_response(StatusCode::CONFLICT, &e.to_string())
        }
        Err(NotPublished::Broker(e)) => error_response(StatusCode::SERVICE_UNAVAILABLE, &e),
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
    // Items without a key are all queued first and their receipts awaited after, so a batch
    // costs one round trip to the shards rather than one per item; keyed items are awaited in
    // place so a repeated key within the batch sees the first item's receipt.
    enum Pending {
        Queued(PublishReply),
        Done(Result<Receipt, NotPublished>),
        Refused(ParseError),
    }
    let mut pending = Vec::with_capacity(items.len());
    for item in items {
        pending.push(match item {
            Err(e) => Pending::Refused(e),
            Ok(r) if r.idempotency_key.is_some() || state.cluster.is_some() => {
                Pending::Done(publish_one(state, r).await)
            }
            Ok(r) => match state.hub.publish(r.target, r.event) {
                Ok(reply) => Pending::Queued(reply),
                Err(e) => Pending::Done(Err(e.into())),
            },
        });
    }
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        let outcome = match p {
            Pending::Queued(reply) => reply.await.map_err(NotPublished::from),
            Pending::Done(r) => r,
            Pending::Refused(e) => {
                inc(&state.metrics.publish_rejected);
                results.push(json!({"error": e.to_string()}));
                continue;
            }
        };
        results.push(match outcome {
            Ok(receipt) => {
                inc(&state.metrics.publish_accepted);
                receipt_json(receipt)
            }
            Err(NotPublished::Engine(e)) => json!({"error": refusal_text(e)}),
            Err(NotPublished::KeyReused(e)) => {
                inc(&state.metrics.publish_rejected);
                inc(&state.metrics.publish_idempotency_conflicts);
                json!({"error": e.to_string()})
            }
            Err(NotPublished::Broker(e)) => json!({"error": e}),
        });
    }
    json_response(StatusCode::OK, &Value::Array(results))
}

/// Why a publish produced no receipt.
#[derive(Debug)]
enum NotPublished {
    /// The engine refused it: shutting down or overloaded (503).
    Engine(PublishError),
    /// The idempotency key belongs to a different request (409).
    KeyReused(KeyReused),
    /// Cluster mode: Redis did not store it (503).
    Broker(String),
}

impl From<PublishError> for NotPublished {
    fn from(e: PublishError) -> NotPublished {
        NotPublished::Engine(e)
    }
}

impl From<HubClosed> for NotPublished {
    fn from(e: HubClosed) -> NotPublished {
        NotPublished::Engine(e.into())
    }
}

/// Publishes, or answers from the idempotency window, or refuses a reused key.
async fn publish_one(state: &AppState, r: PublishRequest) -> Result<Receipt, NotPublished> {
    if let Some(cluster) = &state.cluster {
        // Cluster mode: Redis assigns the seq and keeps the idempotency keys.
        let done = match r.target {
            Target::User(user) => cluster.publish_user(user, r.event, r.idempotency_key).await,
            target => {
                cluster
                    .publish_fanout(target, r.event, r.idempotency_key)
                    .await
            }
        };
        return done.map_err(|e| match e {
            crate::cluster::BrokerError::KeyReused(k) => NotPublished::KeyReused(KeyReused(k)),
            e => NotPublished::Broker(e.to_string()),
        });
    }
    let Some(key) = r.idempotency_key else {
        return Ok(state.hub.publish(r.target, r.event)?.await?);
    };
    let fingerprint = state.idempotency.fingerprint(&r.target, &r.event);
    let slot = state
        .idempotency
        .slot(&key, fingerprint)
        .map_err(NotPublished::KeyReused)?;
    let mut first = false;
    let (target, event) = (r.target, r.event);
    let receipt = *slot
        .get_or_try_init(|| {
            first = true;
            let hub = state.hub.clone();
            async move { Ok::<_, NotPublished>(hub.publish(target, event)?.await?) }
        })
        .await?;
    if !first {
        inc(&state.metrics.publish_idempotent_replays);
    }
    Ok(receipt)
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

fn receipt_json(r: Receipt) -> Value {
    json!({"seq": r.seq, "connections": r.connections})
}

/// Checks the API key, then reads the body within the size and time limits.
pub(crate) async fn authorized_body(
    req: Request<Incoming>,
    state: &AppState,
) -> Result<Bytes, Refusal> {
    let m = &state.metrics;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim());
    if !presented.is_some_and(|k| state.auth.check_api_key(k.as_bytes())) {
        inc(&m.publish_rejected);
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid API key: send `Authorization: Bearer <api key>`",
        ));
    }
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
