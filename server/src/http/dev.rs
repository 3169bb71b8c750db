//! Dev-mode endpoints under `/api/v1/dev/`, for the demo page and the browser tests. They
//! exist only in dev mode (`serve` started with neither secret nor key, see
//! [`Config::enter_dev_mode`](crate::config::Config::enter_dev_mode)); otherwise every path
//! here answers 404, as if it did not exist. They take no API key: dev mode is for a laptop.
//!
//! # Local only
//!
//! Dev mode itself runs only on a loopback listen address (see
//! [`Config::enter_dev_mode`](crate::config::Config::enter_dev_mode)). On top of that, every
//! request here is refused with `403 {"error": ...}` unless
//!
//! - its `Host` is a loopback name: `localhost`, an address in `127.0.0.0/8` or `[::1]`, each
//!   with an optional port (so a DNS-rebinding page on `evil.example` resolving to 127.0.0.1
//!   is refused), and
//! - it carries no `Origin`, or an `Origin` whose host is such a loopback name (so a page on
//!   another site cannot POST `simulate` or `disconnect` from the user's browser; `Origin:
//!   null` is refused too). The demo page, served by this server, sends its own origin.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/dev/token?user=U` | `200 {"token", "user_id", "tier", "expires_in"}`: a client JWT for `U` (default `demo-user`), free tier, 24 h, every channel |
//! | `POST /api/v1/dev/simulate` | `202 {"user_id", "run_id", "events", "interval_ms"}`: starts a simulated agent run for the user |
//! | `POST /api/v1/dev/disconnect` | `200 {"user_id", "connections"}`: closes every WebSocket of the user on this node with 1012 |
//!
//! `simulate` and `disconnect` name the user with a JSON body `{"user_id": "U"}` or, without
//! one, with the user's client token as `Authorization: Bearer <jwt>`; neither → 400.
//!
//! # Simulated run
//!
//! One run (`sim-xxxxxx`) published through the same broker path as `POST /api/v1/publish`
//! (so its events get seqs, wait in history and resume like any other): `agent_started`,
//! `agent_thinking` (step 1/3), `agent_thinking` (2/3), `tool_executing`, `tool_completed`,
//! `agent_thinking` (3/3), [`STEP`] apart; then the answer streamed token by token
//! (`message_started`, one `message_delta` per word [`TOKEN_STEP`] apart,
//! `message_completed`) and `agent_completed`. The run stops early if the hub shuts down.
//!
//! # Disconnect
//!
//! Every session of the user receives the request through a broadcast channel that only dev
//! mode creates (production sessions carry no receiver), and closes with 1012 ("service
//! restart"): a well-behaved client reconnects and resumes with `?last_seq=`. Events
//! published meanwhile wait in the user's history.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use agentcast_engine::{Data, Event, EventKind, Target, UserId};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{Body, error_response, json_response};
use crate::state::AppState;
use crate::tier::Tier;

/// The close code of a dev disconnect: "1012 indicates that the service is restarted".
pub(crate) const KICK_CODE: u16 = 1012;

/// Time between two events of a simulated run.
pub(crate) const STEP: Duration = Duration::from_millis(300);

/// The pause between two tokens of the simulated answer.
pub(crate) const TOKEN_STEP: Duration = Duration::from_millis(40);

/// The simulated answer, streamed one word (and its trailing space) per `message_delta`.
const ANSWER: &str = "12 open tickets: 7 billing, 3 login, 2 export. Billing spike since Tuesday.";

/// Lifetime of a dev token.
const TOKEN_TTL_SECS: u64 = 24 * 3600;

/// Largest body a dev endpoint reads.
const MAX_BODY: usize = 4096;

/// Queued disconnect requests per session before older ones are skipped.
const KICK_QUEUE: usize = 64;

/// Disconnect requests, fanned out to every dev-mode session (each checks the user).
#[derive(Debug)]
pub(crate) struct DevKicks {
    tx: broadcast::Sender<UserId>,
}

impl DevKicks {
    pub(crate) fn new() -> DevKicks {
        DevKicks {
            tx: broadcast::channel(KICK_QUEUE).0,
        }
    }

    /// A receiver for one session.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<UserId> {
        self.tx.subscribe()
    }
}

/// A session's watch for `POST /api/v1/dev/disconnect` of its user. Outside dev mode it holds
/// nothing and never fires; in dev mode the receiving future is boxed once for the session's
/// life, so a connection's task is no bigger in production for it.
pub(crate) struct Kick(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Kick {
    pub(crate) fn new(state: &AppState, user: &UserId) -> Kick {
        Kick(
            state
                .dev_kicks
                .as_ref()
                .map(|k| Box::pin(kicked(k.subscribe(), user.clone())) as Pin<Box<_>>),
        )
    }

    /// Ready once a disconnect of the user arrived (or a lagged receiver may have missed
    /// one). Cancel-safe (for `select!`): the receiving future persists between polls.
    pub(crate) fn poll_kicked(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(f) => f.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// Resolves when a disconnect of `user` arrives on `rx`; never resolves once the sender is
/// gone.
async fn kicked(mut rx: broadcast::Receiver<UserId>, user: UserId) {
    loop {
        match rx.recv().await {
            Ok(u) if u == user => return,
            // A lagged receiver skipped requests of which one may have been ours: close, the
            // client resumes anyway.
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// Routes `/api/v1/dev/*`. See the [module docs](self).
pub(crate) async fn route(req: Request<Incoming>, state: &Arc<AppState>) -> Response<Body> {
    if !state.cfg.dev_mode {
        return error_response(StatusCode::NOT_FOUND, "not found");
    }
    if let Err(why) = local_request(&req) {
        return error_response(StatusCode::FORBIDDEN, &why);
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/api/v1/dev/token") => token(&req, state),
        (&Method::POST, "/api/v1/dev/simulate") => match user_of(req, state).await {
            Ok(user) => simulate(user, state),
            Err(r) => r,
        },
        (&Method::POST, "/api/v1/dev/disconnect") => match user_of(req, state).await {
            Ok(user) => disconnect(user, state),
            Err(r) => r,
        },
        (_, "/api/v1/dev/token" | "/api/v1/dev/simulate" | "/api/v1/dev/disconnect") => {
            error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error_response(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Checks `Host` and `Origin` (see [Local only](self#local-only)); the error says what was
/// refused.
fn local_request<B>(req: &Request<B>) -> Result<(), String> {
    let header = |name| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"))
    };
    let host = header(header::HOST).unwrap_or("");
    if !is_loopback_authority(host) {
        return Err(format!(
            "dev endpoints answer only requests for a loopback host (localhost, 127.0.0.1, [::1]); Host was `{}`",
            host.escape_default()
        ));
    }
    if let Some(origin) = header(header::ORIGIN) {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if !authority.is_some_and(is_loopback_authority) {
            return Err(format!(
                "dev endpoints refuse cross-origin requests; Origin was `{}`",
                origin.escape_default()
            ));
        }
    }
    Ok(())
}

/// Whether `authority` (`host` or `host:port`) names a loopback host: `localhost`, an IPv4
/// address in 127.0.0.0/8, or `[::1]`.
pub(crate) fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, rest))
                if rest.is_empty() || rest.strip_prefix(':').is_some_and(valid_port) =>
            {
                return ip
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|ip| ip.is_loopback());
            }
            _ => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) if valid_port(port) => host,
            Some(_) => return false,
            None => authority,
        }
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A port of 1 to 5 digits.
fn valid_port(p: &str) -> bool {
    (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
}

fn token<B>(req: &Request<B>, state: &AppState) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    let name = crate::client::request::query_param(query, "user");
    let name = name.as_deref().unwrap_or("demo-user");
    let user = match UserId::new(name) {
        Ok(u) => u,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("user: {e}")),
    };
    match state
        .auth
        .mint(user.as_str(), Tier::Free, TOKEN_TTL_SECS, &["*".to_owned()])
    {
        Ok(token) => json_response(
            StatusCode::OK,
            &json!({
                "token": token,
                "user_id": user.as_str(),
                "tier": Tier::Free.as_str(),
                "expires_in": TOKEN_TTL_SECS,
            }),
        ),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The user named by the body's `user_id`, else by a client token in `Authorization`.
async fn user_of(req: Request<Incoming>, state: &AppState) -> Result<UserId, Response<Body>> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let read = tokio::time::timeout(
        state.cfg.limits.handshake_timeout(),
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await;
    let body: Bytes = match read {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return Err(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body over {MAX_BODY} bytes or unreadable"),
            ));
        }
        Err(_) => {
            return Err(error_response(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            ));
        }
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| error_response(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")))?;
        if let Some(u) = v.get("user_id") {
            let name = u.as_str().ok_or_else(|| {
                error_response(StatusCode::BAD_REQUEST, "user_id: expected a string")
            })?;
            return UserId::new(name)
                .map_err(|e| error_response(StatusCode::BAD_REQUEST, &format!("user_id: {e}")));
        }
    }
    match bearer {
        Some(t) => state
            .auth
            .verify(&t)
            .map(|id| id.user)
            .map_err(|e| error_response(StatusCode::UNAUTHORIZED, &e.to_string())),
        None => Err(error_response(
            StatusCode::BAD_REQUEST,
            "missing user: send {\"user_id\": \"...\"} or `Authorization: Bearer <client token>`",
        )),
    }
}

/// The events of a simulated run, in order, each with the pause before it.
fn script() -> Vec<(EventKind, Value, Duration)> {
    let mut steps = vec![
        (
            EventKind::AgentStarted,
            json!({"agent": "research-assistant", "goal": "Summarize this week's open support tickets"}),
        ),
        (
            EventKind::AgentThinking,
            json!({"step": 1, "of": 3, "progress": 0.2, "text": "Reading the ticket queue"}),
        ),
        (
            EventKind::AgentThinking,
            json!({"step": 2, "of": 3, "progress": 0.45, "text": "Choosing a tool to search tickets"}),
        ),
        (
            EventKind::ToolExecuting,
            json!({"tool": "search_tickets", "args": {"status": "open", "since": "7d"}}),
        ),
        (
            EventKind::ToolCompleted,
            json!({"tool": "search_tickets", "result": {"tickets": 12}, "duration_ms": 284}),
        ),
        (
            EventKind::AgentThinking,
            json!({"step": 3, "of": 3, "progress": 0.85, "text": "Writing the summary"}),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v, STEP))
    .collect::<Vec<_>>();
    steps[0].2 = Duration::ZERO;
    let m = "answer";
    steps.push((
        EventKind::MessageStarted,
        json!({"message_id": m, "role": "assistant"}),
        STEP,
    ));
    for word in ANSWER.split_inclusive(' ') {
        steps.push((
            EventKind::MessageDelta,
            json!({"message_id": m, "delta": word}),
            TOKEN_STEP,
        ));
    }
    steps.push((
        EventKind::MessageCompleted,
        json!({"message_id": m, "length": ANSWER.len()}),
        TOKEN_STEP,
    ));
    steps.push((
        EventKind::AgentCompleted,
        json!({"summary": ANSWER, "tokens": 1834}),
        TOKEN_STEP,
    ));
    steps
}

fn simulate(user: UserId, state: &Arc<AppState>) -> Response<Body> {
    let run_id: Arc<str> = format!("sim-{}", crate::config::random_token(6).to_lowercase()).into();
    let steps = script();
    let events = steps.len();
    let (broker, target, run) = (
        Arc::clone(&state.broker),
        Target::User(user.clone()),
        Arc::clone(&run_id),
    );
    tokio::spawn(async move {
        for (kind, data, pause) in steps {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let Ok(data) = Data::from_json(data.to_string()) else {
                continue;
            };
            // Through the broker, as `POST /api/v1/publish` (cluster mode: through Redis).
            let event = Event::new(kind, Arc::clone(&run), data);
            if let Err(e) = broker.publish(target.clone(), event, None).await {
                tracing::warn!(error = %e, "dev simulate: publish refused; run stopped");
                break;
            }
        }
    });
    json_response(
        StatusCode::ACCEPTED,
        &json!({
            "user_id": user.as_str(),
            "run_id": &*run_id,
            "events": events,
            "interval_ms": STEP.as_millis() as u64,
        }),
    )
}

fn disconnect(user: UserId, state: &AppState) -> Response<Body> {
    let connections = state.users.count(&user);
    if let Some(k) = &state.dev_kicks {
        // An error only means no session is listening: nothing to close.
        let _ = k.tx.send(user.clone());
    }
    json_response(
        StatusCode::OK,
        &json!({"user_id": user.as_str(), "connections": connections}),
    )
}

#[cfg(test)]
mod tests {
    use super::is_loopback_authority;

    #[test]
    fn loopback_authorities_are_recognised() {
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:1",
            "127.9.8.7:65535",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "test",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:8080",
            "0.0.0.0",
            "[::2]:80",
            "[::1]x",
            "::1",
            "localhost:",
            "localhost:80:80",
            "localhost:abc",
            "[::ffff:8.8.8.8]",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }
}
