//! Cluster mode: several nodes share one Redis (see `docs/cluster.md`). What must hold
//! cluster-wide lives there: each user's seq, history (a Stream), ack cursor and
//! connection count, and idempotency keys. Nodes keep connections and delivery, as
//! embedded; the engine takes events already sequenced ([`Hub::deliver`]) and seeds each
//! new connection's replay from Redis ([`agentcast_engine::Seed`]).
//!
//! - [`scripts`]: one Lua script per operation, so a publish is one atomic step and one
//!   round trip (the node's requests share one multiplexed connection: concurrent publishes
//!   are pipelined).
//! - [`link`]: the supervisor: connects, checks whether Redis lost its data (raising the
//!   seq floor), subscribes, dispatches what arrives, reconnects with jittered backoff.
//! - [`wire`]: what travels on the channels, parsed without trusting it.
//! - [`health`]: the `broker` component of `/readyz`.
//! - [`subs`]: this node's subscriptions (users, channels), counted, with their linger.
//! - [`broker`]: the engine's `Broker` trait over this module (`RedisBroker`).
//! - [`enrich`]: `meta` of the runs published through this node.
//!
//! Fan-out: a node subscribes to `P:{U}:e` while it holds a connection of U, and to
//! `P:ch:<name>` while a connection here subscribes to channel `name` (each for [`LINGER`]
//! after the last one closes), so it receives only the events of users and channels it
//! serves. Broadcasts go to every node on `P:bc`.

mod broker;
mod enrich;
pub(crate) mod health;
mod link;
mod scripts;
mod subs;
pub(crate) mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentcast_engine::{
    BrokerError, ChannelName, Event, Frame, HistoryEntry, Hub, Published, Receipt, Target, UserId,
};
use redis::aio::{MultiplexedConnection, PubSubSink};

use crate::config::Config;
pub(crate) use broker::RedisBroker;
pub(crate) use health::LinkHealth;
use scripts::Scripts;
use subs::Sub;

/// How long a node stays subscribed to a user after the user's last connection here closed
/// (absorbs reconnect loops).
const LINGER: Duration = Duration::from_secs(10);

/// One node's view of the cluster. See the [module docs](self).
pub(crate) struct Cluster {
    hub: Hub,
    client: redis::Client,
    node: String,
    prefix: String,
    scripts: Scripts,
    health: Arc<LinkHealth>,
    /// The command connection while the link is up.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// The subscriber connection's sending half while the link is up.
    sink: Mutex<Option<PubSubSink>>,
    /// Users this node is subscribed to (or is subscribing to).
    subs: tokio::sync::Mutex<HashMap<UserId, Arc<Sub>>>,
    /// Channels this node is subscribed to (or is subscribing to), by connections here.
    chans: tokio::sync::Mutex<HashMap<ChannelName, Arc<Sub>>>,
    /// Highest ack per user not yet written to Redis.
    acks: Mutex<HashMap<UserId, u64>>,
    /// The highest seq this node has seen (for the floor after a Redis loss).
    max_seen: AtomicU64,
    publish_timeout: Duration,
    history_len: usize,
    /// `max_history_bytes_per_user`, enforced by the publish script.
    history_bytes: usize,
    history_max_age_ms: u64,
    state_ttl_ms: u64,
    idempotency_ttl_ms: u64,
    /// Critical events unacknowledged this long are escalated (by exactly one node).
    ack_deadline_ms: u64,
    /// Run tracking for `meta`, of the runs published through this node.
    enrichers: enrich::Enrichers,
    /// The escalation hook (log, counter, webhook), as the engine calls it embedded.
    escalation: Option<Arc<dyn agentcast_engine::Escalation>>,
    escalate_never_connected: bool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The link's health, created before the hub (the engine's monitor reads it).
    pub(crate) fn link_health(cfg: &Config) -> Arc<LinkHealth> {
        Arc::new(LinkHealth::new(Duration::from_millis(
            cfg.broker_failed_after_ms,
        )))
    }

    /// Starts the link supervisor. `url` was validated with the configuration.
    pub(crate) fn start(
        cfg: &Config,
        hub: Hub,
        health: Arc<LinkHealth>,
        escalation: Option<Arc<dyn agentcast_engine::Escalation>>,
    ) -> Result<Arc<Cluster>, redis::RedisError> {
        let url = cfg.redis_url.as_deref().unwrap_or_default();
        let client = redis::Client::open(url)?;
        let node = cfg.node_id.clone().unwrap_or_else(default_node_id);
        let hub_cfg = hub.config();
        let cluster = Arc::new(Cluster {
            client,
            node,
            prefix: cfg.redis_prefix.clone(),
            scripts: Scripts::new(),
            health,
            conn: Mutex::new(None),
            sink: Mutex::new(None),
            subs: tokio::sync::Mutex::new(HashMap::new()),
            chans: tokio::sync::Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            max_seen: AtomicU64::new(0),
            publish_timeout: Duration::from_millis(cfg.redis_publish_timeout_ms),
            history_len: hub_cfg.history_len,
            history_bytes: hub_cfg.max_history_bytes_per_user.min(u32::MAX as usize),
            history_max_age_ms: hub_cfg.history_max_age.as_millis() as u64,
            // As embedded: an offline user's state lives `user_ttl` after its last publish or
            // connection; connected users' keys are renewed (`link::keep_alive`).
            state_ttl_ms: (hub_cfg.user_ttl.as_millis() as u64).max(1),
            idempotency_ttl_ms: (cfg.limits.idempotency_window_secs * 1000).max(1),
            ack_deadline_ms: cfg.escalation.ack_deadline_ms,
            enrichers: enrich::Enrichers::new(&hub_cfg.enrichment, hub_cfg.max_users),
            escalation,
            escalate_never_connected: cfg.escalation.never_connected
                == crate::config::NeverConnected::Escalate,
            hub,
        });
        tracing::info!(
            target: "agentcast::cluster",
            node = %cluster.node,
            prefix = %cluster.prefix,
            "cluster mode: state in redis"
        );
        tokio::spawn(link::supervise(Arc::clone(&cluster)));
        tokio::spawn(link::flush_acks(Arc::clone(&cluster)));
        tokio::spawn(link::claim_overdue(Arc::clone(&cluster)));
        Ok(cluster)
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    fn key(&self, user: &UserId, what: &str) -> String {
        format!("{}:{{{}}}:{what}", self.prefix, user.as_str())
    }

    /// The Redis channel of a channel's events, `P:ch:<name>`.
    fn channel_key(&self, channel: &ChannelName) -> String {
        format!("{}:ch:{}", self.prefix, channel.as_str())
    }

    /// The Redis channel of broadcasts, `P:bc`.
    fn broadcast_key(&self) -> String {
        format!("{}:bc", self.prefix)
    }

    fn command_conn(&self) -> Result<MultiplexedConnection, BrokerError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        conn.ok_or_else(|| self.unavailable())
    }

    fn unavailable(&self) -> BrokerError {
        match self.health.down_for() {
            Some((d, why)) => BrokerError::Unavailable(format!(
                "redis unreachable for {:.1} s ({why}); nothing was published, retry later",
                d.as_secs_f64()
            )),
            None => BrokerError::Unavailable("redis unreachable".to_owned()),
        }
    }

    /// Runs `f` within the publish timeout; a timeout or an I/O error is `Unavailable`
    /// (the link supervisor notices the loss on its own).
    async fn within<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(self.publish_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.health.set_down(e.to_string());
                }
                Err(BrokerError::Unavailable(format!(
                    "redis: {e}; the event may not be stored, retry (with an idempotency_key to be safe)"
                )))
            }
            Err(_) => Err(BrokerError::Unavailable(format!(
                "redis did not answer within {} ms; the event may not be stored, retry (with an idempotency_key to be safe)",
                self.publish_timeout.as_millis()
            ))),
        }
    }

    /// The request hash (`""` without a key) and the Redis key of an idempotency key
    /// (`P:i:-`, never written, without one: the scripts read it only with a hash).
    fn idempotency(
        &self,
        key: Option<&Arc<str>>,
        target: &Target,
        event: &Event,
    ) -> (String, String) {
        match key {
            Some(k) => (
                wire::request_hash(target, event),
                format!("{}:i:{k}", self.prefix),
            ),
            None => (String::new(), format!("{}:i:-", self.prefix)),
        }
    }

    /// Publishes a user event: seq, history append and fan-out in one script.
    pub(crate) async fn publish_user(
        &self,
        user: UserId,
        event: Event,
        idempotency_key: Option<Arc<str>>,
    ) -> Result<Published, BrokerError> {
        let mut conn = self.command_conn()?;
        let (hash, idem) = self.idempotency(
            idempotency_key.as_ref(),
            &Target::User(user.clone()),
            &event,
        );
        let now = agentcast_engine::frame::now_ms();
        let meta = self.enrichers.meta(&user, &event, now);
        let parts = self
            .hub
            .encode_user_parts_with(&event, now, meta.as_deref());
        // A delta carries what the script needs to merge it, so the script parses no JSON.
        let (merge_key, delta_text) = match event.kind {
            agentcast_engine::EventKind::MessageDelta => {
                match agentcast_engine::delta::merge_parts(event.data.as_bytes()) {
                    Some((message_id, text)) => (
                        scripts::merge_key(event.run_id.as_deref(), message_id),
                        text,
                    ),
                    None => (Vec::new(), &b""[..]),
                }
            }
            _ => (Vec::new(), &b""[..]),
        };
        let mut inv = self.scripts.publish_user.key(self.key(&user, "m"));
        inv.key(self.key(&user, "h"))
            .key(format!("{}:floor", self.prefix))
            .key(self.key(&user, "n"))
            .key(idem)
            .key(format!("{}:dl", self.prefix))
            .arg(parts.head.as_ref())
            .arg(parts.tail.as_ref())
            .arg(wire::priority_digit(parts.priority))
            .arg(self.history_len)
            .arg(self.state_ttl_ms)
            .arg(&hash)
            .arg(self.idempotency_ttl_ms)
            .arg(self.key(&user, "e"))
            .arg(format!("{}:node:", self.prefix))
            .arg(event.kind.index())
            .arg(parts.coalesce_run.as_deref().unwrap_or(""))
            .arg(self.ack_deadline_ms)
            .arg(user.as_str())
            .arg(self.history_bytes)
            .arg(agentcast_engine::history::ENTRY_OVERHEAD)
            .arg(merge_key)
            .arg(delta_text)
            .arg(scripts::MAX_STORED_MERGE_BYTES);
        let (code, seq, connections): (u8, String, String) =
            self.within(inv.invoke_async(&mut conn)).await?;
        if code == 2 {
            return Err(BrokerError::KeyReused(idempotency_key.unwrap_or_default()));
        }
        let seq: u64 = seq.parse().unwrap_or(0);
        self.max_seen.fetch_max(seq, Ordering::Relaxed);
        Ok(Published {
            receipt: Receipt {
                seq: Some(seq),
                connections: connections.parse().unwrap_or(0),
            },
            replayed: code == 1,
        })
    }

    /// Publishes a channel or broadcast event to every node. The receipt counts this node's
    /// recipients (other nodes deliver on their own; they do not answer).
    pub(crate) async fn publish_fanout(
        &self,
        target: Target,
        event: Event,
        idempotency_key: Option<Arc<str>>,
    ) -> Result<Published, BrokerError> {
        let mut conn = self.command_conn()?;
        let (hash, idem) = self.idempotency(idempotency_key.as_ref(), &target, &event);
        let mut message = self.node.clone().into_bytes();
        message.push(b'\n');
        message.extend_from_slice(&wire::fanout_request(&target, &event));
        let channel = match &target {
            Target::Channel(c) => self.channel_key(c),
            _ => self.broadcast_key(),
        };
        let mut inv = self.scripts.publish_fanout.key(&idem);
        inv.arg(&hash)
            .arg(self.idempotency_ttl_ms)
            .arg(channel)
            .arg(message);
        let (code, n): (u8, usize) = self.within(inv.invoke_async(&mut conn)).await?;
        match code {
            2 => Err(BrokerError::KeyReused(idempotency_key.unwrap_or_default())),
            1 => Ok(Published {
                receipt: Receipt {
                    seq: None,
                    connections: n,
                },
                replayed: true,
            }),
            _ => {
                let receipt = self.hub.publish(target, event)?.await?;
                if idempotency_key.is_some() {
                    let _: redis::RedisResult<()> = redis::cmd("HSET")
                        .arg(&idem)
                        .arg("c")
                        .arg(receipt.connections)
                        .query_async(&mut conn)
                        .await;
                }
                Ok(Published {
                    receipt,
                    replayed: false,
                })
            }
        }
    }

    /// An ack from a connection here: written to Redis within [`link::ACK_FLUSH`].
    pub(crate) fn ack(&self, user: &UserId, seq: u64) {
        let mut acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        let a = acks.entry(user.clone()).or_default();
        *a = (*a).max(seq);
    }

    /// Delivers one message of a user channel to the user's connections here.
    async fn dispatch_user(&self, user: &str, payload: &[u8]) {
        let Some(m) = wire::parse_user_message(payload) else {
            tracing::warn!(target: "agentcast::cluster", "malformed user event on redis: dropped");
            return;
        };
        let Ok(user) = UserId::new(user) else {
            return;
        };
        if let Some(sub) = self.subs.lock().await.get(&user) {
            sub.top.fetch_max(m.seq, Ordering::Relaxed);
        }
        self.max_seen.fetch_max(m.seq, Ordering::Relaxed);
        self.deliver(
            user,
            HistoryEntry::new(
                m.seq,
                m.priority,
                m.at_ms,
                Frame::text(m.payload).into_bytes(),
            ),
            m.kind,
            m.coalesce_run.map(Arc::from),
        )
        .await;
    }

    /// Hands a sequenced event to the engine, waiting while the shard's queue is full.
    async fn deliver(
        &self,
        user: UserId,
        entry: HistoryEntry,
        kind: u8,
        coalesce: Option<Arc<str>>,
    ) {
        loop {
            match self
                .hub
                .deliver(user.clone(), entry.clone(), kind, coalesce.clone())
            {
                Err(agentcast_engine::PublishError::Overloaded { .. }) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                _ => return,
            }
        }
    }

    /// Publishes a fan-out message from another node to the connections here.
    fn dispatch_fanout(&self, payload: &[u8]) {
        let Some((origin, request)) = wire::parse_fanout_message(payload) else {
            return;
        };
        if origin == self.node {
            return;
        }
        match agentcast_engine::PublishRequest::parse(&bytes::Bytes::copy_from_slice(request)) {
            Ok(r) if !matches!(r.target, Target::User(_)) => {
                let _ = self.hub.send(r.target, r.event);
            }
            _ => {
                tracing::warn!(target: "agentcast::cluster", "malformed fan-out event on redis: dropped")
            }
        }
    }
}

impl Cluster {
    /// Hands one claimed overdue event to the escalation hook (see `link::claim_overdue`).
    fn escalate(&self, row: &(String, String, String, Vec<u8>, String, String)) {
        let (user, seq, published, payload, connections, ever) = row;
        let (Ok(user), Ok(seq)) = (UserId::new(user), seq.parse::<u64>()) else {
            return;
        };
        let ever_connected = ever == "1";
        if !ever_connected && !self.escalate_never_connected {
            return;
        }
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
        let kind = v["type"]
            .as_str()
            .and_then(|k| agentcast_engine::EventKind::parse(k).ok())
            .unwrap_or(agentcast_engine::EventKind::AgentError);
        let e = agentcast_engine::UnackedCritical {
            user,
            seq,
            run_id: v["run_id"].as_str().map(Arc::from),
            kind,
            published_ms: published.parse().unwrap_or(0),
            connections: connections.parse().unwrap_or(0),
            ever_connected,
        };
        if let Some(hook) = &self.escalation {
            hook.escalate(e);
        }
    }
}

/// `<hostname>-<8 hex digits>`.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}
