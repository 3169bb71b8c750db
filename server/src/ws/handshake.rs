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
//! | server shutting down, node failed, or `max_connections` connections open (WebSocket and SSE together) | 503 |
//! | the user holds its tier's `connections_per_user` (WebSocket and SSE together) | 429 |
//!
//! The token, `?last_seq` and admission (the last two rows) are shared with `GET /sse`: see
//! [`crate::client`].
//!
//! No subprotocol and no extension is negotiated (so RSV bits must stay clear).

use std::sync::Arc;

use agentcast_engine::Resume;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::session::Session;
use crate::client::admit::{Admitted, admit};
use crate::client::protocol::Protocol;
use crate::client::request;
use crate::http::{Body, Refusal, error_response};
use crate::metrics::inc;
use crate::state::AppState;

/// Handles `GET /ws`. See the [module docs](self).
pub(crate) async fn upgrade(mut req: Request<Incoming>, state: Arc<AppState>) -> Response<Body> {
    let m = &state.metrics;
    let UpgradeRequest {
        key,
        resume,
        token,
        protocol,
    } = match parse_upgrade(&req) {
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
    let Admitted { conn, admission } = match admit(&state, &identity, resume, protocol).await {
        Ok(a) => a,
        Err(refusal) => return refusal,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Everything the session needs is made here, so the task holds each piece once.
    let mut session = Session::new(identity, protocol, Arc::clone(&state));
    let mut conn = conn;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => {
                    inc(&session.state().metrics.ws_accepted);
                    let stream = parts.io.into_inner();
                    session.run(&mut conn, stream, parts.read_buf).await;
                }
                Err(_) => tracing::error!("upgraded connection is not a TcpStream"),
            },
            Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
        }
        // Dropping `conn` unregisters it from the engine; the admission (the user's and the
        // node's connection counts) is given back after that.
        drop(conn);
        drop(admission);
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
    /// From `?protocol=` (native when absent).
    pub(crate) protocol: Protocol,
}

/// The sans-IO part of the handshake: checks method and headers, extracts the key, `last_seq`
/// and the token. Deterministic, so it is fuzzed (`fuzz/fuzz_targets/upgrade_request.rs`).
pub(crate) fn parse_upgrade<B>(req: &Request<B>) -> Result<UpgradeRequest, Refusal> {
    let key = check_request(req)?;
    let query = req.uri().query().unwrap_or("");
    let resume = request::last_seq(query)?;
    let token = request::client_token(req.headers(), query)?;
    let protocol = Protocol::from_query(query)?;
    Ok(UpgradeRequest {
        key,
        resume,
        token,
        protocol,
    })
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
