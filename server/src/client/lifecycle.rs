//! What a connection task does the same way on both transports: the `welcome`, the token
//! deadline, the reason of an engine close, channel subscriptions (engine first, then the
//! broker's watch) and the end of a shutdown grace period.
//!
//! Each transport keeps its own loop (WebSocket reads client messages; SSE has no inbound
//! direction) and calls these, so the rules cannot drift apart:
//!
//! - **token expiry**: [`token_deadline`] is `exp` + `jwt_leeway_secs`, from the wall clock;
//!   at it the connection is closed with [`TOKEN_EXPIRED`] (4001, `token expired`);
//! - **engine closes** (1001 at shutdown once the ring is empty, 1013 for a connection too
//!   slow for a critical event, 1011 on an internal fault): every frame still in the hand-off
//!   queue is sent first, then the close with [`engine_close_reason`];
//! - **shutdown grace over** ([`abandoned`]): the task stops sending, counts what it still
//!   held in `shutdown_unwritten` and ends without a close.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentcast_engine::{ChannelName, Connection, Lease, SubscribeError};
use serde_json::json;
use tokio::time::Instant;

use crate::auth::Identity;
use crate::state::AppState;

/// Close code of a connection whose token expired (`exp` + leeway): "4000-4999 … available
/// for use by applications" (RFC 6455 §7.4.2). Reason: `token expired`.
pub(crate) const TOKEN_EXPIRED: u16 = 4001;

/// The `welcome` message's JSON (the same bytes on both transports).
pub(crate) fn welcome_json(state: &AppState, id: &Identity, conn: &Connection) -> String {
    let w = conn.welcome();
    json!({
        "type": "welcome",
        "conn_id": w.conn_id.0,
        "user_id": id.user.as_str(),
        "tier": id.tier.as_str(),
        "last_seq": w.last_seq,
        "heartbeat_ms": state.cfg.heartbeat_ms,
    })
    .to_string()
}

/// When the token stops being valid: `exp` + leeway, from the wall clock (capped at a year so
/// the deadline never overflows).
pub(crate) fn token_deadline(state: &AppState, id: &Identity) -> Instant {
    let end = std::time::UNIX_EPOCH
        + Duration::from_secs(
            id.expires_at
                .saturating_add(state.auth.leeway_secs())
                .min(u64::from(u32::MAX) * 4),
        );
    let left = end
        .duration_since(std::time::SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .min(Duration::from_secs(365 * 24 * 3600));
    Instant::now() + left
}

/// The reason sent with a close the engine asked for.
pub(crate) fn engine_close_reason(code: u16) -> &'static str {
    match code {
        1001 => "server shutting down",
        1011 => "internal error: reconnect and resume",
        1013 => "too slow: reconnect and resume",
        _ => "closed by server",
    }
}

/// Resolves once the shutdown grace period is over (never if the signal's sender is gone).
pub(crate) async fn abandoned(abandon: &mut tokio::sync::watch::Receiver<bool>) {
    if abandon.wait_for(|a| *a).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The broker's lease on each channel a connection subscribed to (cluster mode: this node
/// receives the channel from Redis while one is held). At most the tier's subscriptions per
/// connection.
pub(crate) type Watches = HashMap<ChannelName, Lease>;

/// How a subscribe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subscribed {
    /// In force: events published to the channel (on any node) reach the connection.
    Yes,
    /// The token's `channels` claim does not allow it.
    Forbidden,
    /// The tier's subscriptions per connection are all taken.
    Limit {
        /// The limit.
        max: usize,
    },
    /// The broker could not watch the channel (Redis down); the engine subscription was
    /// undone.
    Unavailable(String),
    /// Refused because a shutdown began: the frames still queued keep flowing, and the engine
    /// asks for the 1001 after them.
    ShuttingDown,
    /// The engine no longer holds the connection.
    Closed,
}

/// Subscribes `conn` to `channel` for `id`. The engine first (it refuses past the tier's
/// limit), then the broker (cluster mode: this node subscribes to the channel in Redis), both
/// before this returns, so events published on other nodes reach the connection once it
/// answers [`Subscribed::Yes`]. A refused subscribe costs Redis nothing.
pub(crate) async fn subscribe(
    state: &Arc<AppState>,
    id: &Identity,
    conn: &Connection,
    watches: &mut Watches,
    channel: ChannelName,
) -> Subscribed {
    if !id.channels.allows(&channel) {
        return Subscribed::Forbidden;
    }
    let answer = conn.subscribe(channel.clone()).await;
    if matches!(answer, Ok(Ok(()))) && !watches.contains_key(&channel) {
        match state.broker.watch(&channel).await {
            Ok(lease) => {
                watches.insert(channel, lease);
            }
            Err(e) => {
                conn.unsubscribe(channel);
                return Subscribed::Unavailable(e.to_string());
            }
        }
    }
    match answer {
        Ok(Ok(())) => Subscribed::Yes,
        Ok(Err(SubscribeError::Limit { max })) => Subscribed::Limit { max },
        Ok(Err(SubscribeError::Closed)) | Err(_) if state.is_shutting_down() => {
            Subscribed::ShuttingDown
        }
        Ok(Err(SubscribeError::Closed)) | Err(_) => Subscribed::Closed,
    }
}
