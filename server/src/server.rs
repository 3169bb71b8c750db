//! The accept loop and graceful shutdown: [`run`] serves HTTP/1.1 and WebSocket on one
//! listener until `shutdown` resolves.
//!
//! # Connections
//!
//! Each accepted socket gets `TCP_NODELAY` and one task running hyper's HTTP/1.1 server with
//! upgrades enabled. The request head must arrive within `handshake_timeout_ms` (hyper's
//! header-read timeout, which also bounds an idle keep-alive connection's wait for its next
//! request); a client that never completes its request is dropped and counted in
//! `handshake_timeouts`. Accept errors (such as running out of file descriptors) are logged and
//! retried after a short pause rather than ending the server.
//!
//! # Graceful shutdown
//!
//! When `shutdown` resolves: the listener is closed (no new connections), `/readyz` turns 503
//! and new upgrades are refused, idle HTTP connections are closed after their current request,
//! and the hub shuts down, which asks every WebSocket session to close with 1001. Each session
//! then writes what the engine had handed it, a close frame 1001, and ends. `run` waits for
//! the sessions at most `shutdown_grace_ms`, then returns `Ok(())`.

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
use crate::idempotency::IdempotencyCache;
use crate::metrics::{ServerMetrics, inc};
use crate::state::{AppState, Sessions};
use crate::tier::UserConnections;

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The JWT key could not be loaded: fix `jwt_public_key`.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The engine's worker threads could not be started.
    #[error("cannot start the engine: {0}")]
    Engine(std::io::Error),
}

/// Serves on `listener` with `config` until `shutdown` resolves, then shuts down gracefully.
/// See the [module docs](self).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
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
    let node = listener
        .local_addr()
        .map_or_else(|_| config.listen.to_string(), |a| a.to_string());
    let (hook, escalation_task) =
        WebhookEscalation::new(&config.escalation, node, Arc::clone(&metrics));
    hub_cfg.escalation = Some(Arc::new(hook));
    hub_cfg.escalate_never_connected =
        config.escalation.never_connected == crate::config::NeverConnected::Escalate;
    tokio::spawn(escalation_task);
    let hub = Hub::start(hub_cfg).map_err(ServerError::Engine)?;
    let limits = &config.limits;
    let state = Arc::new(AppState {
        hub,
        auth,
        idempotency: IdempotencyCache::new(
            Duration::from_secs(limits.idempotency_window_secs),
            limits.idempotency_max_keys,
        ),
        users: Arc::new(UserConnections::default()),
        sessions: Arc::new(Sessions::new(limits.max_connections, Arc::clone(&metrics))),
        metrics,
        shutting_down: Default::default(),
        dev_kicks: config.dev_mode.then(crate::http::dev::DevKicks::new),
        cfg: config,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "agentcast listening");
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_http(stream, Arc::clone(&state), stop_rx.clone()));
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
    let _ = stop_tx.send(true);
    let hub = state.hub.clone();
    let _ = tokio::task::spawn_blocking(move || hub.shutdown()).await;
    let grace = Duration::from_millis(state.cfg.shutdown_grace_ms);
    if tokio::time::timeout(grace, state.sessions.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; abandoning remaining connections");
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// One HTTP connection (and, through an upgrade, one WebSocket session).
async fn serve_http(stream: TcpStream, state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let svc_state = Arc::clone(&state);
    let svc = service_fn(move |req| {
        let st = Arc::clone(&svc_state);
        async move { Ok::<_, std::convert::Infallible>(crate::http::route(req, st).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.cfg.limits.handshake_timeout());
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            inc(&state.metrics.handshake_timeouts);
        }
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

/// Resolves once shutdown began (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.is_ok();
}
