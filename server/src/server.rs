//! The accept loop and graceful shutdown: [`run`] serves HTTP/1.1 and WebSocket on one
//! listener until `shutdown` resolves.
//!
//! # Connections
//!
//! Each accepted socket gets `TCP_NODELAY` and one task running hyper's HTTP/1.1 server with
//! upgrades enabled. Before authentication a connection costs little: the request head must
//! arrive within `handshake_timeout_ms` (hyper's header-read timeout, which also bounds an
//! idle keep-alive connection's wait for its next request; a client that never completes its
//! request is dropped and counted in `handshake_timeouts`), must not exceed
//! `max_request_head_bytes` (hyper answers 431 and closes; counted in
//! `request_head_too_large`), and at most `max_pending_connections` connections may be
//! waiting for a head at once (beyond it the one waiting longest is closed, see
//! `server/src/pending.rs`). Accept errors (such as running out of file descriptors) are
//! logged and retried after a short pause rather than ending the server.
//!
//! # Graceful shutdown
//!
//! When `shutdown` resolves: the listener is closed (no new connections), `/readyz` turns 503
//! and new upgrades are refused, idle HTTP connections are closed after their current request,
//! and the hub begins its shutdown ([`Hub::begin_shutdown`]): publishes are refused (503) and
//! every frame already queued to a connection, in its priority ring as well as its hand-off
//! queue, keeps flowing to its session. Each session writes all of them, then a close frame
//! 1001 (which the engine asks for once the connection's queue is empty), and ends. So every
//! event whose receipt counted a connection is written to it.
//!
//! `run` waits for the sessions at most `shutdown_grace_ms`. When the grace period ends first,
//! the remaining sessions are told to give up: each counts the frames it holds and ends, the
//! hub stops and counts what was still queued, and the total is logged at WARN (`shutdown: N
//! queued frames were not written (grace period over)`) and exported as
//! `agentcast_shutdown_unwritten_frames_total`. Then `run` returns `Ok(())`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agentcast_engine::{Hub, HubConfig};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::auth::{Authenticator, KeyError};
use crate::config::Config;
use crate::escalation::WebhookEscalation;
use crate::metrics::{ServerMetrics, inc};
use crate::pending::{PendingHeads, PendingTicket};
use crate::state::{AppState, Sessions};
use crate::tier::UserConnections;
use agentcast_engine::idempotency::IdempotencyCache;

/// How long sessions told to give up (grace period over) get to count what they hold and end.
const ABANDON_WAIT: Duration = Duration::from_millis(500);

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The JWT key could not be loaded: fix `jwt_public_key`.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Dev mode on a listener that is not loopback: configure a secret and key, or listen on
    /// 127.0.0.1 (see [`Config::enter_dev_mode`]).
    #[error("dev mode refused: the listener {0} is not a loopback address")]
    DevModeExposed(std::net::SocketAddr),
    /// The engine's worker threads could not be started.
    #[error("cannot start the engine: {0}")]
    Engine(std::io::Error),
    /// `redis_url` could not be used.
    #[error("cannot use redis_url: {0}")]
    Redis(String),
}

/// Serves on `listener` with `config` until `shutdown` resolves, then shuts down gracefully.
/// See the [module docs](self).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    if config.dev_mode {
        // The binary refuses earlier (`enter_dev_mode`); this covers a config built in code.
        let addr = listener.local_addr().unwrap_or(config.listen);
        if !crate::config::is_loopback(addr.ip()) {
            return Err(ServerError::DevModeExposed(addr));
        }
    }
    let auth = Authenticator::from_config(&config)?;
    let metrics = Arc::new(ServerMetrics::default());
    let mut hub_cfg = HubConfig::default();
    if let Some(n) = config.shards {
        hub_cfg.shards = n;
    }
    hub_cfg.health = config.health.to_engine();
    // Checked by `Config::validate`; a config built in code falls back to the defaults.
    hub_cfg.enrichment = config.enrichment.to_engine().unwrap_or_default();
    hub_cfg.ack_deadline = Duration::from_millis(config.escalation.ack_deadline_ms);
    // Tables (issue 11): bounds, TTL, and the history length of users of unknown tier.
    hub_cfg.max_users = config.max_users;
    hub_cfg.max_history_bytes = config.max_history_bytes;
    hub_cfg.max_history_bytes_per_user = config.max_history_bytes_per_user;
    hub_cfg.user_ttl = Duration::from_millis(config.user_ttl_ms);
    hub_cfg.history_len = config.default_history_len();
    hub_cfg.command_queue = config.command_queue_capacity;
    let node = listener
        .local_addr()
        .map_or_else(|_| config.listen.to_string(), |a| a.to_string());
    let (hook, escalation_task) =
        WebhookEscalation::new(&config.escalation, node, Arc::clone(&metrics));
    let hook: Arc<dyn agentcast_engine::Escalation> = Arc::new(hook);
    hub_cfg.escalation = Some(Arc::clone(&hook));
    hub_cfg.escalate_never_connected =
        config.escalation.never_connected == crate::config::NeverConnected::Escalate;
    tokio::spawn(escalation_task);
    let link_health = config
        .redis_url
        .is_some()
        .then(|| crate::cluster::Cluster::link_health(&config));
    if let Some(h) = &link_health {
        hub_cfg.broker_health = Some(Arc::clone(h) as _);
    }
    let hub = Hub::start(hub_cfg).map_err(ServerError::Engine)?;
    let cluster = match link_health {
        Some(h) => Some(
            crate::cluster::Cluster::start(&config, hub.clone(), h, Some(hook))
                .map_err(|e| ServerError::Redis(e.to_string()))?,
        ),
        None => None,
    };
    let limits = &config.limits;
    let broker: Arc<dyn agentcast_engine::Broker> = match &cluster {
        Some(c) => Arc::new(crate::cluster::RedisBroker(Arc::clone(c))),
        None => Arc::new(agentcast_engine::InProcessBroker::new(
            hub.clone(),
            IdempotencyCache::new(
                Duration::from_secs(limits.idempotency_window_secs),
                limits.idempotency_max_keys,
            ),
        )),
    };
    let state = Arc::new(AppState {
        hub,
        broker,
        cluster,
        auth,
        users: Arc::new(UserConnections::default()),
        sessions: Arc::new(Sessions::new(limits.max_connections, Arc::clone(&metrics))),
        metrics,
        shutting_down: Default::default(),
        dev_kicks: config.dev_mode.then(crate::http::dev::DevKicks::new),
        abandon: watch::channel(false).0,
        stop: watch::channel(false).0,
        streams: Default::default(),
        cfg: config,
    });
    let pending = PendingHeads::new(
        state.cfg.limits.max_pending_connections,
        Arc::clone(&state.metrics),
    );
    let stop_rx = state.stop.subscribe();
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "agentcast listening");
    }
    let mut reserve = crate::listener::FdReserve::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    // Registered before the task runs, so the cap holds however many
                    // accepts are queued.
                    let ticket = PendingTicket::new(&pending);
                    tokio::spawn(serve_http(stream, Arc::clone(&state), stop_rx.clone(), ticket));
                }
                Err(e) if crate::listener::is_out_of_files(&e) => {
                    if reserve.answer_one(&listener).await {
                        crate::metrics::inc(&state.metrics.accept_out_of_files);
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: closing connections with 1001");
    drop(listener);
    state.shutting_down.store(true, Ordering::Relaxed);
    let _ = state.stop.send(true);
    let grace = Duration::from_millis(state.cfg.shutdown_grace_ms);
    let deadline = tokio::time::Instant::now() + grace;
    let hub = state.hub.clone();
    // Joins the health monitor's thread: off the runtime's threads.
    let _ = tokio::task::spawn_blocking(move || hub.begin_shutdown()).await;
    // Publish streams first: each writes the receipts of what it published, then its last
    // line (their publishes were queued before the hub's shutdown began).
    let streams_ended = tokio::time::timeout_at(deadline, state.streams.wait_idle())
        .await
        .is_ok();
    let drained = streams_ended
        && tokio::time::timeout_at(deadline, state.sessions.wait_idle())
            .await
            .is_ok();
    if !drained {
        // Sessions count what they took from the engine but did not write, and drop their
        // connection, whose queued frames the engine counts.
        let _ = state.abandon.send(true);
        let _ = tokio::time::timeout(ABANDON_WAIT, async {
            state.streams.wait_idle().await;
            state.sessions.wait_idle().await;
        })
        .await;
    }
    let hub = state.hub.clone();
    let _ = tokio::task::spawn_blocking(move || hub.shutdown()).await;
    let unwritten = state.hub.stats().total.shutdown_unwritten
        + state.metrics.shutdown_unwritten.load(Ordering::Relaxed);
    if unwritten > 0 {
        let why = if drained {
            "clients went away"
        } else {
            "grace period over"
        };
        tracing::warn!(
            unwritten,
            grace_ms = state.cfg.shutdown_grace_ms,
            "shutdown: {unwritten} queued frames were not written ({why})"
        );
    } else if !drained {
        tracing::warn!("shutdown grace period over; remaining connections abandoned");
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// One HTTP connection (and, through an upgrade, one WebSocket session).
async fn serve_http(
    stream: TcpStream,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
    ticket: Arc<PendingTicket>,
) {
    let svc_state = Arc::clone(&state);
    let svc_ticket = Arc::clone(&ticket);
    let abort = Abort::default();
    let svc_abort = abort.clone();
    let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let st = Arc::clone(&svc_state);
        let ticket = Arc::clone(&svc_ticket);
        req.extensions_mut().insert(svc_abort.clone());
        async move {
            ticket.head_arrived();
            let keep_alive = wants_keep_alive(&req);
            let response = crate::http::route(req, st).await;
            // Pending again until the next head, unless the connection closes after this
            // response, is upgraded, or streams.
            if keep_alive
                && response.status() != http::StatusCode::SWITCHING_PROTOCOLS
                && !response.body().is_streaming()
            {
                ticket.awaiting_head();
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let limits = &state.cfg.limits;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout())
        .max_header_size(limits.max_request_head_bytes);
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        // Closed without an answer: it has not sent a complete request.
        () = ticket.evicted() => return,
        // A streamed response gave up on a client that stopped reading (see `Abort`).
        () = abort.0.notified() => return,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            inc(&state.metrics.handshake_timeouts);
        } else if e.is_parse_too_large() {
            inc(&state.metrics.request_head_too_large);
        }
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

/// Closes one HTTP connection at once, from a handler: given to every request in its
/// extensions. A streamed response (`GET /sse`) whose client stopped reading cannot end
/// itself (hyper stops polling a body while the socket is full), so when its write timeout
/// or the shutdown grace period passes it aborts the connection; the socket and hyper's
/// buffers are freed then rather than when the client finally reads or goes away.
#[derive(Debug, Clone, Default)]
pub(crate) struct Abort(Arc<tokio::sync::Notify>);

impl Abort {
    /// Drops the connection (now, or as soon as its task next runs: the permit is stored).
    pub(crate) fn abort(&self) {
        self.0.notify_one();
    }
}

/// Whether the connection stays open for another request after this one: HTTP/1.1 without a
/// `Connection: close`.
fn wants_keep_alive<B>(req: &http::Request<B>) -> bool {
    req.version() == http::Version::HTTP_11
        && !req
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

/// Resolves once shutdown began (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.is_ok();
}
