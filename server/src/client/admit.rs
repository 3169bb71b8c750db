//! Admission of an authenticated client, the same for `GET /ws` and `GET /sse`: every
//! refusal is a plain HTTP answer with a JSON `{"error": ...}` body, decided before anything
//! is streamed or upgraded.
//!
//! | check | status | counter |
//! |---|---|---|
//! | server shutting down | 503 | `ws_rejected_capacity` |
//! | this node's health is failed | 503 | `ws_rejected_failed` |
//! | `max_connections` connections open on this node (both transports together) | 503 | `ws_rejected_capacity` |
//! | the user holds its tier's `connections_per_user` (both transports together; cluster-wide in cluster mode) | 429 | `ws_rejected_user_limit` |
//! | the broker cannot open the connection (Redis down) or the engine is shutting down | 503 | `ws_rejected_capacity` |
//!
//! The counters keep their `ws_` names (dashboards and alerts use them): they count SSE
//! clients too, as the connection gauge and the per-tier gauge do. An admitted connection
//! holds an [`Admission`] for as long as it lives; dropping it frees every slot it took.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use agentcast_engine::{BrokerError, ConnectOptions, Connection, HealthState, Lease, Resume};
use http::{Response, StatusCode};

use crate::auth::Identity;
use crate::client::protocol::Protocol;
use crate::http::{Body, error_response};
use crate::metrics::{ServerMetrics, inc};
use crate::state::{AppState, SessionSlot};
use crate::tier::UserSlot;

/// What an admitted connection holds while it lives: its node slot (the `ws_open` gauge and
/// `max_connections`), its user slot (`connections_per_user`) and the broker's lease (cluster
/// mode: the user's subscription and cluster-wide count). Dropped last, after the engine
/// connection.
#[derive(Debug)]
pub(crate) struct Admission {
    _session: SessionSlot,
    _user: UserSlot,
    _lease: Lease,
}

/// The per-tier open-connections gauge (`tier_open`), held by a running connection task.
#[derive(Debug)]
pub(crate) struct TierGauge {
    metrics: Arc<ServerMetrics>,
    tier: usize,
}

impl TierGauge {
    /// Counts one open connection of `id`'s tier until dropped.
    pub(crate) fn open(metrics: &Arc<ServerMetrics>, id: &Identity) -> TierGauge {
        let tier = id.tier as usize;
        metrics.tier_open[tier].fetch_add(1, Relaxed);
        TierGauge {
            metrics: Arc::clone(metrics),
            tier,
        }
    }
}

impl Drop for TierGauge {
    fn drop(&mut self) {
        self.metrics.tier_open[self.tier].fetch_sub(1, Relaxed);
    }
}

/// A connection the engine registered, with what it holds.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The engine's handle: replayed history (and a `gap`) is already queued to it.
    pub(crate) conn: Connection,
    /// Held until the connection ends.
    pub(crate) admission: Admission,
}

/// Admits `identity` resuming at `resume`, or answers why not. See the [module docs](self).
pub(crate) async fn admit(
    state: &Arc<AppState>,
    identity: &Identity,
    resume: Resume,
    protocol: Protocol,
) -> Result<Admitted, Response<Body>> {
    let m = &state.metrics;
    if state.is_shutting_down() {
        inc(&m.ws_rejected_capacity);
        return Err(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down",
        ));
    }
    if state.hub.health_status() == HealthState::Failed {
        inc(&m.ws_rejected_failed);
        let why = state.hub.health().failure_reasons();
        return Err(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("this node is failed and refuses new connections: {why}"),
        ));
    }
    let Some(session_slot) = state.sessions.try_acquire() else {
        inc(&m.ws_rejected_capacity);
        return Err(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is at its connection limit; retry later or elsewhere",
        ));
    };
    let tier = *state.cfg.tiers.get(identity.tier);
    let Some(user_slot) = state
        .users
        .try_acquire(&identity.user, tier.connections_per_user)
    else {
        inc(&m.ws_rejected_user_limit);
        return Err(error_response(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "connection limit of {} for tier {} reached",
                tier.connections_per_user, identity.tier
            ),
        ));
    };
    let mut opts = ConnectOptions::default();
    opts.resume = resume;
    opts.max_subscriptions = tier.subscriptions_per_connection;
    opts.history_len = Some(tier.history_len);
    // AG-UI streams are only valid in order (see `ConnectOptions::replay_in_seq_order`).
    opts.replay_in_seq_order = protocol == Protocol::AgUi;
    // And a join without a seq in the middle of a run starts at the run's start (the join
    // prelude, docs/ag-ui.md).
    opts.rewind_to_open_run = protocol == Protocol::AgUi;
    // The broker opens the connection first (cluster mode: subscribe to the user, count the
    // connection cluster-wide and read the replay from Redis; see `crate::cluster`).
    let lease = match state
        .broker
        .open(
            &identity.user,
            opts.resume,
            tier.history_len,
            tier.connections_per_user,
            opts.rewind_to_open_run,
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
            return Err(error_response(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("{e} for tier {}", identity.tier),
            ));
        }
        Err(e) => {
            inc(&m.ws_rejected_capacity);
            return Err(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &e.to_string(),
            ));
        }
    };
    // Registered in a task of its own: hyper drops this future when the client goes away
    // mid-request, and a `Connecting` dropped after the shard registered the connection
    // would leave it registered with no `Connection` to unregister it (found by
    // `tests/tests/hostile_connections.rs`: connect/reset storms leaked engine
    // connections). The spawned task always finishes; if nobody awaits it any more, the
    // `Connection` it yields is dropped with it, which unregisters it.
    let connecting = state.hub.connect(identity.user.clone(), opts);
    let conn = match tokio::spawn(connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(_)) | Err(_) => {
            inc(&m.ws_rejected_capacity);
            return Err(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "server is shutting down",
            ));
        }
    };
    Ok(Admitted {
        conn,
        admission: Admission {
            _session: session_slot,
            _user: user_slot,
            _lease: lease,
        },
    })
}
