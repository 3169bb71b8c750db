//! `GET /sse`: server-sent events as a second client transport, for networks that block
//! WebSocket and frontends that use `EventSource`. The same user, limits and events as
//! `GET /ws`; only the framing differs.
//!
//! # Connect
//!
//! The request is checked ([`request`]), the token verified (401, as on `/ws`), every
//! `?channels=` name authorized by the token's `channels` claim (403 naming the first one
//! refused) and counted against the tier's `subscriptions_per_connection` (403), then the
//! client is admitted exactly as a WebSocket client is ([`crate::client::admit`]: 503/429,
//! counted together with WebSocket connections), registered with the engine, and subscribed
//! to its channels, all before the `200`. A refusal is a JSON `{"error": ...}` body.
//!
//! # The stream
//!
//! `200` with `Content-Type: text/event-stream`, `Cache-Control: no-cache` and
//! `X-Accel-Buffering: no` (a buffering proxy such as nginx passes each event on at once).
//! It begins with `retry: 2000` and the `welcome` event; then the replay (a `gap` first when
//! the resume asked for events no longer held), then live events, each as [`encode`] writes
//! it; a `: ping` comment every `heartbeat_ms`. See [`stream`] for lag and close.
//!
//! # Acks
//!
//! An event stream has no client → server direction: acks are `POST /api/v1/ack` (see
//! `crate::http::ack`), a user-level ack that needs no connection.

pub(crate) mod encode;
pub(crate) mod request;
pub(crate) mod stream;

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::client::admit::{Admitted, admit};
use crate::client::lifecycle::{Subscribed, Watches, subscribe};
use crate::http::{Body, error_response};
use crate::metrics::inc;
use crate::server::Abort;
use crate::state::AppState;

/// Handles `GET /sse`. See the [module docs](self).
pub(crate) async fn open(req: Request<Incoming>, state: Arc<AppState>) -> Response<Body> {
    let m = &state.metrics;
    let parsed = match request::parse_sse(&req) {
        Ok(p) => p,
        Err(refusal) => {
            inc(&m.ws_rejected_handshake);
            return refusal.into_response();
        }
    };
    let identity = match state.auth.verify(&parsed.token) {
        Ok(id) => id,
        Err(e) => {
            inc(&m.ws_rejected_auth);
            return error_response(StatusCode::UNAUTHORIZED, &e.to_string());
        }
    };
    if let Some(c) = parsed
        .channels
        .iter()
        .find(|c| !identity.channels.allows(c))
    {
        inc(&m.ws_rejected_handshake);
        return error_response(
            StatusCode::FORBIDDEN,
            &format!("not allowed to subscribe to `{c}`"),
        );
    }
    let max = state
        .cfg
        .tiers
        .get(identity.tier)
        .subscriptions_per_connection;
    let mut distinct = parsed.channels.clone();
    distinct.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    distinct.dedup();
    if distinct.len() > max {
        inc(&m.ws_rejected_handshake);
        return error_response(
            StatusCode::FORBIDDEN,
            &format!(
                "subscription limit of {max} for tier {} reached: {} channels asked for",
                identity.tier,
                distinct.len()
            ),
        );
    }
    let Admitted { conn, admission } =
        match admit(&state, &identity, parsed.resume, parsed.protocol).await {
            Ok(a) => a,
            Err(refusal) => return refusal,
        };
    let mut watches = Watches::new();
    for channel in distinct {
        let shown = channel.to_string();
        let refused = match subscribe(&state, &identity, &conn, &mut watches, channel).await {
            Subscribed::Yes => continue,
            Subscribed::Forbidden => (
                StatusCode::FORBIDDEN,
                format!("not allowed to subscribe to `{shown}`"),
            ),
            Subscribed::Limit { max } => (
                StatusCode::FORBIDDEN,
                format!("subscription limit of {max} reached"),
            ),
            Subscribed::Unavailable(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
            Subscribed::ShuttingDown | Subscribed::Closed => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server is shutting down".to_owned(),
            ),
        };
        // Dropping `conn`, the watches and the admission undoes the connect.
        inc(if refused.0 == StatusCode::FORBIDDEN {
            &m.ws_rejected_handshake
        } else {
            &m.ws_rejected_capacity
        });
        return error_response(refused.0, &refused.1);
    }
    let abort = req.extensions().get::<Abort>().cloned();
    stream::start(stream::Opened {
        state,
        identity,
        conn,
        watches,
        admission,
        abort,
        protocol: parsed.protocol,
    })
}
