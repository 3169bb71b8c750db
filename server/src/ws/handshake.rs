//! The HTTP side of `GET /ws`: validates the upgrade request (RFC 6455 §4.2.1),
//! authenticates and admits the client, registers it with the hub, answers `101 Switching
//! Protocols`, and hands the raw TCP stream to a [`session`](super::session).
//!
//! Everything that can refuse a client happens **before** the upgrade, as a plain HTTP answer
//! with a JSON body `{"error": "..."}`:
//!
//! | check | status |
//! |---|---|
//! | method is not GET | 405 |
//! | missing `Upgrade: websocket`, `Connection: upgrade` or a valid `Sec-WebSocket-Key` | 400 |
//! | `Sec-WebSocket-Version` is not 13 | 426 (with `Sec-WebSocket-Version: 13`) |
//! | `?last_seq` is not a non-negative integer | 400 |
//! | `?last_seq` or `?token` has a malformed percent-escape (`%` not followed by two hex digits) or decodes to invalid UTF-8 | 400 |
//! | token missing, malformed, expired, not yet valid, wrongly signed, `alg: none`, wrong algorithm, wrong aud/iss, too long | 401 |
//! | server shutting down, or `max_connections` sessions open | 503 |
//! | the user holds its tier's `connections_per_user` | 429 |
//!
//! No subprotocol and no extension is negotiated (so RSV bits must stay clear).

use std::borrow::Cow;
use std::sync::Arc;

use agentcast_engine::{BrokerError, ConnectOptions, HealthState, Resume};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::http::{Body, Refusal, error_response};
use crate::metrics::inc;
use crate::state::AppState;

/// Handles `GET /ws`. See the [module docs](self).
pub(crate) async fn upgrade(mut req: Request<Incoming>, state: Arc<AppState>) -> Response<Body> {
    let m = &state.metrics;
    let UpgradeRequest { key, resume, token } = match parse_upgrade(&req) {
        Ok(u) => u,
        Err(refusal) => {
            inc(&m.ws_rejected_handshake);
            return refusal.into_response();
        }
    };
    let identity = match state.auth.verify(&token) {
        Ok(id) => id,
        Err(e) => {
            inc(&m.ws_rejected_auth);
            return error_response(StatusCode::UNAUTHORIZED, &e.to_string());
        }
    };
    if state.is_shutting_down() {
        inc(&m.ws_rejected_capacity);
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    if state.hub.health_status() == HealthState::Failed {
        inc(&m.ws_rejected_failed);
        let why = state.hub.health().failure_reasons();
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("this node is failed and refuses new connections: {why}"),
        );
    }
    let Some(session_slot) = state.sessions.try_acquire() else {
        inc(&m.ws_rejected_capacity);
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is at its connection limit; retry later or elsewhere",
        );
    };
    let tier = *state.cfg.tiers.get(identity.tier);
    let Some(user_slot) = state
        .users
        .try_acquire(&identity.user, tier.connections_per_user)
    else {
        inc(&m.ws_rejected_user_limit);
        return error_response(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "connection limit of {} for tier {} reached",
                tier.connections_per_user, identity.tier
            ),
        );
    };
    let mut opts = ConnectOptions::default();
    opts.resume = resume;
    opts.max_subscriptions = tier.subscriptions_per_connection;
    opts.history_len = Some(tier.history_len);
    // Registered in a task of its own: hyper drops this future when the client goes away
    // mid-request, and a `Connecting` dropped after the shard registered the connection
    // would leave it registered with no `Connection` to unregister it (found by
    // `tests/tests/hostile_connections.rs`: connect/reset storms leaked engine
    // connections). The spawned task always finishes; if nobody awaits it any more, the
    // `Connection` it yields is dropped with it, which unregisters it.
    // The broker opens the connection first (cluster mode: subscribe to the user, count the
    // connection cluster-wide and read the replay from Redis; see `crate::cluster`).
    let lease = match state
        .broker
        .open(
            &identity.user,
            opts.resume,
            tier.history_len,
            tier.connections_per_user,
        )
        .await
    {
        Ok(opened) => {
            opts.resume = opened.resume;
            opts.seed = opened.seed.map(Box::new);
            opened.lease
        }
        Err(e @ BrokerError::ConnectionLimit(_)) => {
            inc(&m.ws_rejected_user_limit);
            return error_response(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("{e} for tier {}", identity.tier),
            );
        }
        Err(e) => {
            inc(&m.ws_rejected_capacity);
            return error_response(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let connecting = state.hub.connect(identity.user.clone(), opts);
    let conn = match tokio::spawn(connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(_)) | Err(_) => {
            inc(&m.ws_rejected_capacity);
            return error_response(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_state = Arc::clone(&state);
    tokio::spawn(async move {
        let _slots = (session_slot, user_slot, lease);
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                inc(&task_state.metrics.ws_accepted);
                let stream = parts.io.into_inner();
                super::session::run(stream, parts.read_buf, conn, identity, task_state).await;
            }
            Err(_) => tracing::error!("upgraded connection is not a TcpStream"),
        }
    });
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(Body::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// What the upgrade request asks for, once its headers and query string checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpgradeRequest {
    /// The `Sec-WebSocket-Key` (trimmed; decodes to 16 bytes).
    pub(crate) key: String,
    /// From `?last_seq=N`, else from the ack cursor.
    pub(crate) resume: Resume,
    /// The token of `Authorization: Bearer`, else of `?token=`; empty when neither is given
    /// (the authenticator then answers 401 "missing token").
    pub(crate) token: String,
}

/// The sans-IO part of the handshake: checks method and headers, extracts the key, `last_seq`
/// and the token. Deterministic, so it is fuzzed (`fuzz/fuzz_targets/upgrade_request.rs`).
pub(crate) fn parse_upgrade<B>(req: &Request<B>) -> Result<UpgradeRequest, Refusal> {
    let key = check_request(req)?;
    let query = req.uri().query().unwrap_or("");
    let bad_escape = |name: &str| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("`{name}` in the query string has a malformed percent-escape"),
        )
    };
    let last_seq = try_query_param(query, "last_seq").map_err(|_| bad_escape("last_seq"))?;
    let resume = match last_seq {
        None => Resume::FromAck,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => Resume::After(n),
            Err(_) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "last_seq must be a non-negative integer",
                ));
            }
        },
    };
    let token = match bearer(req.headers()) {
        Some(t) => t.to_owned(),
        None => try_query_param(query, "token")
            .map_err(|_| bad_escape("token"))?
            .unwrap_or_default()
            .into_owned(),
    };
    Ok(UpgradeRequest { key, resume, token })
}

/// Checks the upgrade headers; returns the `Sec-WebSocket-Key`.
fn check_request<B>(req: &Request<B>) -> Result<String, Refusal> {
    if req.method() != Method::GET {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET to open a WebSocket",
        )
        .with_header(header::ALLOW, "GET"));
    }
    let h = req.headers();
    if !has_token(h, header::UPGRADE, "websocket") || !has_token(h, header::CONNECTION, "upgrade") {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "not a WebSocket upgrade: `Upgrade: websocket` and `Connection: upgrade` are required",
        ));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(Refusal::new(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version: 13 is required",
        )
        .with_header(header::SEC_WEBSOCKET_VERSION, "13"));
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|d| d.len() == 16)
        });
    match key {
        Some(k) => Ok(k.to_owned()),
        None => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "missing or invalid Sec-WebSocket-Key",
        )),
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// A query value that cannot be decoded: a `%` not followed by two hex digits, or bytes that
/// are not UTF-8 once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadEscape;

/// The decoded value of `name` in a query string (first occurrence), or `None`; a malformed
/// value is `None` too. See [`try_query_param`].
pub(crate) fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    try_query_param(query, name).ok().flatten()
}

/// The decoded value of `name` in a query string (first occurrence): `+` is a space
/// (`application/x-www-form-urlencoded`), `%XX` a byte (decoded by the `percent-encoding`
/// crate); a malformed escape or non-UTF-8 result is [`BadEscape`].
pub(crate) fn try_query_param<'a>(
    query: &'a str,
    name: &str,
) -> Result<Option<Cow<'a, str>>, BadEscape> {
    let Some(raw) = query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    }) else {
        return Ok(None);
    };
    form_decode(raw).map(Some)
}

fn form_decode(s: &str) -> Result<Cow<'_, str>, BadEscape> {
    let b = s.as_bytes();
    // `percent-encoding` passes a malformed escape through as it is; the client gets a 400
    // instead, rather than a token or seq silently different from what it meant.
    let well_formed = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(BadEscape);
    }
    let spaced: Cow<'_, str> = if s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    match spaced {
        Cow::Borrowed(s) => percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map_err(|_| BadEscape),
        Cow::Owned(s) => percent_encoding::percent_decode_str(&s)
            .decode_utf8()
            .map(|c| Cow::Owned(c.into_owned()))
            .map_err(|_| BadEscape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        assert_eq!(
            query_param("a=1&token=x%2Ey&last_seq=5", "token").as_deref(),
            Some("x.y")
        );
        assert_eq!(query_param("last_seq=5", "last_seq").as_deref(), Some("5"));
        assert_eq!(try_query_param("x=%zz", "x"), Err(BadEscape));
        assert_eq!(try_query_param("x=ab%4", "x"), Err(BadEscape));
        assert_eq!(try_query_param("x=%ff", "x"), Err(BadEscape));
        assert_eq!(query_param("x=%41", "x").as_deref(), Some("A"));
        assert_eq!(query_param("x=a+b%2B", "x").as_deref(), Some("a b+"));
        assert_eq!(query_param("tokenx=1", "token"), None);
    }
}
