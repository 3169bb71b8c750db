//! This node's subscriptions, in Redis and counted: to a user while a connection of the
//! user is open here (opening a connection also counts it cluster-wide and reads its
//! replay), to a channel while a connection here watches it; each ends [`LINGER`] after its
//! last holder, unless a new one came meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use agentcast_engine::{BrokerError, ChannelName, Resume, Seed, UserId};

use super::{Cluster, LINGER, wire};

/// This node's subscription to one user or channel.
#[derive(Debug, Default)]
pub(super) struct Sub {
    /// The user's (the channel's subscribed) connections on this node.
    pub(super) refs: AtomicUsize,
    /// Set once `SUBSCRIBE` was confirmed on the current subscriber connection.
    pub(super) subscribed: tokio::sync::OnceCell<()>,
    /// The highest seq delivered for the user (where a catch-up read starts; unused for
    /// channels).
    pub(super) top: AtomicU64,
}

impl Sub {
    /// The same holders, not yet subscribed on a new subscriber connection.
    pub(super) fn unsubscribed(&self) -> Sub {
        let fresh = Sub::default();
        fresh
            .refs
            .store(self.refs.load(Ordering::SeqCst), Ordering::SeqCst);
        fresh
            .top
            .store(self.top.load(Ordering::SeqCst), Ordering::SeqCst);
        fresh
    }
}

/// Keeps this node subscribed to a user while a connection of the user is open here.
pub(crate) struct UserGuard {
    cluster: Arc<Cluster>,
    user: UserId,
    /// Whether the open script counted the connection in Redis (so closing uncounts it).
    counted: bool,
}

impl Drop for UserGuard {
    fn drop(&mut self) {
        let cluster = Arc::clone(&self.cluster);
        let (user, counted) = (self.user.clone(), self.counted);
        tokio::spawn(async move { cluster.closed(user, counted).await });
    }
}

/// Keeps this node subscribed to a channel while a connection here watches it.
struct ChannelGuard {
    cluster: Arc<Cluster>,
    channel: ChannelName,
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        self.cluster.unwatch_channel(self.channel.clone());
    }
}

/// One more holder of `key`'s subscription (created unsubscribed if new).
async fn hold<K: std::hash::Hash + Eq + Clone>(
    map: &tokio::sync::Mutex<HashMap<K, Arc<Sub>>>,
    key: &K,
) -> Arc<Sub> {
    let mut subs = map.lock().await;
    let sub = Arc::clone(subs.entry(key.clone()).or_default());
    sub.refs.fetch_add(1, Ordering::SeqCst);
    sub
}

impl Cluster {
    /// A new connection of `user` here: subscribes to the user (first connection), counts it
    /// cluster-wide and reads what to replay: after `resume`'s seq, or after the ack cursor;
    /// or, for a join from the ack cursor that rewinds to the open run's start (`rewind`: the
    /// AG-UI join prelude), the newest `history_len` held entries, those at or below the
    /// cursor included, answered as `Resume::FromAck` so that the shard finds the run's start
    /// in the seeded history. (Without that, a node that never held the user had nothing to
    /// rewind to: found by `tests/tests/ag_ui_cluster.rs`.)
    pub(crate) async fn open_user(
        self: &Arc<Self>,
        user: &UserId,
        resume: Resume,
        history_len: usize,
        connection_limit: usize,
        rewind: bool,
    ) -> Result<agentcast_engine::Opened, BrokerError> {
        let rewind = rewind && resume == Resume::FromAck;
        let sub = hold(&self.subs, user).await;
        let mut guard = UserGuard {
            cluster: Arc::clone(self),
            user: user.clone(),
            counted: false,
        };
        self.subscribe_once(&sub, &self.key(user, "e")).await?;
        let mut conn = self.command_conn()?;
        // A seq beyond what Lua doubles hold exactly is beyond every seq: nothing to replay.
        let from = match resume {
            Resume::FromAck => String::new(),
            Resume::After(n) => n.min(1 << 53).to_string(),
        };
        let mut inv = self.scripts.open_user.key(self.key(user, "m"));
        inv.key(self.key(user, "h"))
            .key(format!("{}:floor", self.prefix))
            .key(self.key(user, "n"))
            .arg(from)
            .arg(history_len.max(1))
            .arg(&self.node)
            .arg(self.state_ttl_ms)
            .arg(connection_limit)
            .arg(format!("{}:node:", self.prefix))
            .arg(if rewind { "1" } else { "" });
        let answer: redis::Value = self.within(inv.invoke_async(&mut conn)).await?;
        if matches!(&answer, redis::Value::Array(a) if a.len() == 1) {
            return Err(BrokerError::ConnectionLimit(connection_limit));
        }
        let (s, a, from, entries): (String, String, String, wire::Entries) =
            redis::FromRedisValue::from_redis_value(answer).map_err(|e| {
                BrokerError::Unavailable(format!("redis: unexpected answer to open: {e}"))
            })?;
        guard.counted = true;
        let (s, a, from) = (
            s.parse().unwrap_or(0),
            a.parse().unwrap_or(0),
            from.parse().unwrap_or(0),
        );
        sub.top.fetch_max(s, Ordering::SeqCst);
        self.max_seen.fetch_max(s, Ordering::Relaxed);
        // The link may have replaced its subscriptions while this open ran (its subscriber
        // connection failed): then `sub` is the old one, the new subscriber connection's
        // catch-up may have passed this user before `s` was known (it starts after `top`, and
        // skips a user whose `top` is still 0), and events between this open's read and the
        // new subscription would reach this connection only at its next resume. Refuse it
        // instead: the client retries (503) and resumes from its last seq. Checked after
        // `top` was raised: a replacement after this point copies it.
        let current = self.subs.lock().await.get(user).map(Arc::clone);
        if !current.is_some_and(|c| Arc::ptr_eq(&c, &sub)) {
            return Err(BrokerError::Unavailable(
                "redis: the subscriber connection was replaced during the connect; retry".into(),
            ));
        }
        let now = agentcast_engine::frame::now_ms();
        let entries = if history_len == 0 {
            Vec::new()
        } else {
            entries
                .iter()
                .filter_map(|(id, fields)| wire::parse_entry(id, fields))
                .filter(|e| now.saturating_sub(e.at_ms) <= self.history_max_age_ms)
                .map(wire::StoredEntry::into_history)
                .collect()
        };
        Ok(agentcast_engine::Opened {
            // The seed's ack is the cluster-wide cursor; a rewinding join keeps `FromAck`.
            resume: if rewind {
                Resume::FromAck
            } else {
                Resume::After(from)
            },
            seed: Some(Seed {
                last_seq: s,
                ack: a,
                entries,
            }),
            lease: agentcast_engine::Lease::new(guard),
        })
    }

    /// A connection of `user` here closed.
    async fn closed(self: Arc<Self>, user: UserId, counted: bool) {
        if counted && let Ok(mut conn) = self.command_conn() {
            let mut inv = self.scripts.close_user.key(self.key(&user, "n"));
            inv.arg(&self.node);
            let _: redis::RedisResult<i64> = inv.invoke_async(&mut conn).await;
        }
        let channel = self.key(&user, "e");
        self.release(&self.subs, &user, channel).await;
    }

    /// One holder of `key`'s subscription fewer: the last one unsubscribes after [`LINGER`]
    /// unless a new holder came meanwhile.
    async fn release<K: std::hash::Hash + Eq>(
        &self,
        map: &tokio::sync::Mutex<HashMap<K, Arc<Sub>>>,
        key: &K,
        channel: String,
    ) {
        let last = map
            .lock()
            .await
            .get(key)
            .is_some_and(|s| s.refs.fetch_sub(1, Ordering::SeqCst) == 1);
        if !last {
            return;
        }
        tokio::time::sleep(LINGER).await;
        let mut subs = map.lock().await;
        if subs
            .get(key)
            .is_some_and(|s| s.refs.load(Ordering::SeqCst) == 0)
        {
            subs.remove(key);
            let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(mut sink) = sink {
                let _ = sink.unsubscribe(channel).await;
            }
        }
    }

    /// A connection here watches `channel`: subscribes this node to the channel's events
    /// (first one), waiting for Redis to confirm, so a `pong` after a `subscribe` still
    /// proves the subscription is in force cluster-wide. The lease's end unwatches it.
    pub(crate) async fn watch_channel(
        self: &Arc<Self>,
        channel: &ChannelName,
    ) -> Result<agentcast_engine::Lease, BrokerError> {
        let sub = hold(&self.chans, channel).await;
        // Counted from here: an error drops the guard, which uncounts it.
        let guard = ChannelGuard {
            cluster: Arc::clone(self),
            channel: channel.clone(),
        };
        self.subscribe_once(&sub, &self.channel_key(channel))
            .await?;
        Ok(agentcast_engine::Lease::new(guard))
    }

    /// Subscribes the current subscriber connection to `channel` unless `sub` already is.
    async fn subscribe_once(&self, sub: &Sub, channel: &str) -> Result<(), BrokerError> {
        self.within(sub.subscribed.get_or_try_init(|| async {
            let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match sink {
                Some(mut sink) => sink.subscribe(channel).await,
                None => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no subscriber connection",
                ))),
            }
        }))
        .await
        .map(|_| ())
    }

    /// A connection here no longer watches `channel` (unsubscribed, or closed).
    fn unwatch_channel(self: &Arc<Self>, channel: ChannelName) {
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            let key = cluster.channel_key(&channel);
            cluster.release(&cluster.chans, &channel, key).await;
        });
    }
}
