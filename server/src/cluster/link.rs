//! The Redis link's supervisor (see `docs/cluster.md` §4.1). One task per node:
//!
//! 1. connect the command connection (connect timeout 500 ms, response timeout 1 s);
//! 2. check whether Redis may have lost data: its `run_id` differs from `P:inst` (a restart,
//!    or a promoted replica). If so the seq floor `P:floor` is raised above every seq this
//!    node has seen and above Redis's clock × 1000, so no seq is ever issued twice and a
//!    resume across the loss gets a `gap`;
//! 3. open the subscriber connection; subscribe to broadcasts (`P:bc`), to every user with a
//!    connection here and to every channel a connection here subscribed to (in commands of
//!    1,000 channels);
//! 4. renew this node's lease and re-register its connection counts (an empty Redis learns
//!    them again);
//! 5. catch up: for each user, read what was stored after the last seq delivered here and
//!    deliver it before anything that arrives live (the engine drops what it has seen);
//! 6. mark the link up, then dispatch messages, `PING` and send the canary every 500 ms and
//!    renew the lease every 2 s, until either connection fails, the canary's publish fails,
//!    or the subscriber connection goes 2 s without carrying a canary back (open but wedged);
//!    then mark it down and start again after `min(2 s, 50 ms × 2^n)`, fully jittered.
//!
//! **The canary through Redis.** Every 500 ms the node publishes a tiny event to its own
//! canary user (`\u{1}canary:<node>`, an id no token or publisher can name) with the same
//! publish script as every user event: seq, Stream append, `PUBLISH` on the user's channel,
//! which this node subscribes to. Its arrival in the dispatcher proves the whole cluster path
//! up to the shards (script, Stream, pub/sub, subscriber connection, dispatcher); the engine's
//! own canary proves the rest (shard → connection). A Redis that refuses writes (OOM) fails
//! the publish; a wedged subscriber connection (Centrifugo #1189) stops the arrivals.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agentcast_engine::UserId;
use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use redis::aio::{MultiplexedConnection, PubSubStream};

use super::{Cluster, wire};

/// Acks are written to Redis this often, one script per user with a new ack.
pub(crate) const ACK_FLUSH: Duration = Duration::from_millis(20);

/// How long a node's lease lives without renewal: its connection counts stop counting.
const LEASE: Duration = Duration::from_secs(10);

/// A subscriber connection that carries none of this node's canaries (one every 500 ms)
/// back for this long is taken for wedged and replaced.
const CANARY_SILENCE: Duration = Duration::from_millis(2_000);

/// A key of this node's canary user, `P:{\u{1}canary:<node>}:<what>`.
fn canary_key(cluster: &Cluster, what: &str) -> String {
    format!("{}:{{\u{1}canary:{}}}:{what}", cluster.prefix, cluster.node)
}

/// Publishes canary `n` with the publish script (see the [module docs](self)); its keys
/// live 10 s and hold one entry.
async fn send_canary(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
    n: u32,
) -> redis::RedisResult<()> {
    let mut inv = cluster.scripts.publish_user.key(canary_key(cluster, "m"));
    inv.key(canary_key(cluster, "h"))
        .key(format!("{}:floor", cluster.prefix))
        .key(canary_key(cluster, "n"))
        .key(format!("{}:i:-", cluster.prefix))
        .key(format!("{}:dl", cluster.prefix))
        .arg(r#"{"type":"agentcast_canary","seq":"#)
        .arg(format!(r#","data":{{"n":{n}}}}}"#))
        .arg("0")
        .arg(1)
        .arg(10_000)
        .arg("")
        .arg(0)
        .arg(canary_key(cluster, "e"))
        .arg(format!("{}:node:", cluster.prefix))
        .arg(u8::MAX)
        .arg("")
        .arg(0)
        .arg("")
        .arg(u32::MAX)
        .arg(0)
        .arg("")
        .arg("")
        .arg(0);
    let _: (u8, String, String) = inv.invoke_async(conn).await?;
    Ok(())
}

/// Runs forever: see the [module docs](self).
pub(crate) async fn supervise(cluster: Arc<Cluster>) {
    let mut failures: u32 = 0;
    loop {
        match connect(&cluster).await {
            Ok((conn, stream)) => {
                failures = 0;
                let why = serve(&cluster, conn, stream).await;
                cluster.health.set_down(why.clone());
                tracing::warn!(target: "agentcast::cluster", reason = %why, "redis link lost; reconnecting");
            }
            Err(e) => {
                cluster.health.set_down(e.to_string());
                if failures == 0 {
                    tracing::warn!(target: "agentcast::cluster", error = %e, "cannot reach redis; retrying");
                }
            }
        }
        *cluster.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *cluster.sink.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // Every user and channel must be subscribed again on the next subscriber connection.
        for sub in cluster.subs.lock().await.values_mut() {
            *sub = Arc::new(sub.unsubscribed());
        }
        for sub in cluster.chans.lock().await.values_mut() {
            *sub = Arc::new(sub.unsubscribed());
        }
        let cap = Duration::from_millis(50).saturating_mul(1 << failures.min(6));
        let cap = cap.min(Duration::from_secs(2));
        let delay = cap.mul_f64(rand::random::<f64>());
        failures = failures.saturating_add(1);
        tokio::time::sleep(delay).await;
    }
}

/// Steps 1–5.
async fn connect(
    cluster: &Arc<Cluster>,
) -> redis::RedisResult<(MultiplexedConnection, PubSubStream)> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_secs(1)));
    let mut conn = cluster
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    check_for_loss(cluster, &mut conn).await?;
    let pubsub = tokio::time::timeout(Duration::from_secs(1), cluster.client.get_async_pubsub())
        .await
        .map_err(|_| timeout("subscriber connection"))??;
    let (mut sink, stream) = pubsub.split();
    let subs: Vec<(UserId, Arc<super::subs::Sub>)> = cluster
        .subs
        .lock()
        .await
        .iter()
        .map(|(u, s)| (u.clone(), Arc::clone(s)))
        .collect();
    let chans: Vec<(String, Arc<super::subs::Sub>)> = cluster
        .chans
        .lock()
        .await
        .iter()
        .map(|(c, s)| (cluster.channel_key(c), Arc::clone(s)))
        .collect();
    let two_s = Duration::from_secs(2);
    let own = [cluster.broadcast_key(), canary_key(cluster, "e")];
    tokio::time::timeout(two_s, sink.subscribe(&own))
        .await
        .map_err(|_| timeout("subscribe"))??;
    let users = subs.iter().map(|(u, s)| (cluster.key(u, "e"), s));
    let all: Vec<(String, &Arc<super::subs::Sub>)> = users
        .chain(chans.iter().map(|(c, s)| (c.clone(), s)))
        .collect();
    for chunk in all.chunks(1000) {
        let channels: Vec<&str> = chunk.iter().map(|(c, _)| c.as_str()).collect();
        tokio::time::timeout(two_s, sink.subscribe(&channels))
            .await
            .map_err(|_| timeout("subscribe"))??;
        for (_, s) in chunk {
            let _ = s.subscribed.set(());
        }
    }
    renew_lease(cluster, &mut conn).await?;
    for chunk in subs.chunks(1000) {
        let mut pipe = redis::pipe();
        for (user, sub) in chunk {
            let refs = sub.refs.load(Ordering::SeqCst);
            if refs > 0 {
                pipe.hset(cluster.key(user, "n"), &cluster.node, refs)
                    .ignore();
            }
        }
        if pipe.is_empty() {
            continue;
        }
        let _: () = pipe.query_async(&mut conn).await?;
    }
    catch_up(cluster, &mut conn, &subs).await?;
    *cluster.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
    *cluster.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    cluster.health.set_up();
    tracing::info!(target: "agentcast::cluster", users = subs.len(), "redis link up");
    Ok((conn, stream))
}

fn timeout(what: &str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "timed out", what.to_owned()))
}

/// Step 2.
async fn check_for_loss(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<()> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    let run_id = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .unwrap_or("")
        .trim()
        .to_owned();
    let inst_key = format!("{}:inst", cluster.prefix);
    let known: Option<String> = redis::cmd("GET").arg(&inst_key).query_async(conn).await?;
    if known.as_deref() == Some(run_id.as_str()) {
        return Ok(());
    }
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    let now_ms = secs * 1000 + micros / 1000;
    let floor_key = format!("{}:floor", cluster.prefix);
    let old: Option<u64> = redis::cmd("GET").arg(&floor_key).query_async(conn).await?;
    let floor = (now_ms * 1000)
        .max(cluster.max_seen.load(Ordering::Relaxed) + 1)
        .max(old.unwrap_or(0));
    let _: () = redis::pipe()
        .set(&floor_key, floor)
        .ignore()
        .set(&inst_key, &run_id)
        .ignore()
        .query_async(conn)
        .await?;
    if known.is_some() {
        tracing::warn!(
            target: "agentcast::cluster",
            floor,
            "redis server changed (restart or failover): seqs continue above the floor; resumes across it get a gap"
        );
    }
    Ok(())
}

async fn renew_lease(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(format!("{}:node:{}", cluster.prefix, cluster.node))
        .arg(1)
        .arg("PX")
        .arg(LEASE.as_millis() as u64)
        .query_async(conn)
        .await
}

/// Renews the TTL of every connected user's keys (`m`, `h`, `n`), 1,000 users per pipeline.
async fn keep_alive(cluster: &Cluster, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let users: Vec<UserId> = cluster
        .subs
        .lock()
        .await
        .iter()
        .filter(|(_, s)| s.refs.load(Ordering::SeqCst) > 0)
        .map(|(u, _)| u.clone())
        .collect();
    for chunk in users.chunks(1000) {
        let mut pipe = redis::pipe();
        for user in chunk {
            for what in ["m", "h", "n"] {
                pipe.pexpire(cluster.key(user, what), cluster.state_ttl_ms as i64)
                    .ignore();
            }
        }
        let _: () = pipe.query_async(conn).await?;
    }
    Ok(())
}

/// Step 5: for each user, what was stored after its top seq, read with one `XRANGE` per
/// user, up to 1,000 users per pipeline (one round trip each: with the default 100 entries
/// per user, 200 users, so a node holding 10,000 users catches up in 50 round trips, not
/// 10,000, and a replaced link is back in a fraction of a second even on a starved node).
async fn catch_up(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
    subs: &[(UserId, Arc<super::subs::Sub>)],
) -> redis::RedisResult<()> {
    let count = cluster.history_len.max(1);
    // At most 1,000 users, and at most 20,000 entries, per round trip: a long outage with
    // full histories must not make one answer too large for the response timeout (it would
    // then fail on every retry, as no user's `top` moves).
    let users = (20_000 / count).clamp(1, 1000);
    for chunk in subs.chunks(users) {
        let mut pipe = redis::pipe();
        let mut asked = Vec::with_capacity(chunk.len());
        for (user, sub) in chunk {
            let top = sub.top.load(Ordering::SeqCst);
            if top == 0 {
                continue;
            }
            pipe.cmd("XRANGE")
                .arg(cluster.key(user, "h"))
                .arg(format!("({top}-0"))
                .arg("+")
                .arg("COUNT")
                .arg(count);
            asked.push((user, sub));
        }
        if asked.is_empty() {
            continue;
        }
        let replies: Vec<wire::Entries> = pipe.query_async(conn).await?;
        for ((user, sub), entries) in asked.into_iter().zip(replies) {
            for (id, fields) in &entries {
                if let Some(e) = wire::parse_entry(id, fields) {
                    sub.top.fetch_max(e.seq, Ordering::SeqCst);
                    // Merged deltas straddling `top` are cut by the shard (it drops what it
                    // has).
                    let entry = e.into_history();
                    // The kind index is for counters only; a catch-up counts as a custom type.
                    cluster.deliver(user.clone(), entry, u8::MAX, None).await;
                }
            }
        }
    }
    Ok(())
}

/// Step 6: returns why the link ended.
async fn serve(
    cluster: &Arc<Cluster>,
    mut conn: MultiplexedConnection,
    mut stream: PubSubStream,
) -> String {
    let mut ping = tokio::time::interval(Duration::from_millis(500));
    let mut ticks: u32 = 0;
    let user_prefix = cluster.prefix.clone();
    let broadcast = cluster.broadcast_key();
    let channels = format!("{}:ch:", cluster.prefix);
    let canary = canary_key(cluster, "e");
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return "subscriber connection closed".to_owned();
                };
                let channel = msg.get_channel_name();
                if channel == canary {
                    heard = tokio::time::Instant::now();
                } else if channel == broadcast || channel.starts_with(&channels) {
                    cluster.dispatch_fanout(msg.get_payload_bytes());
                } else if let Some(user) = wire::user_of_channel(&user_prefix, channel) {
                    cluster.dispatch_user(user, msg.get_payload_bytes()).await;
                }
            }
            _ = ping.tick() => {
                ticks = ticks.wrapping_add(1);
                let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
                if let Err(e) = r {
                    return format!("ping failed: {e}");
                }
                cluster.enrichers.expire(agentcast_engine::frame::now_ms());
                if ticks % 4 == 0 && let Err(e) = renew_lease(cluster, &mut conn).await {
                    return format!("lease renewal failed: {e}");
                }
                // Connected users never expire: their keys' TTLs are renewed every third of it.
                let every = (cluster.state_ttl_ms / 3 / 500).max(1);
                if u64::from(ticks) % every == 0 && let Err(e) = keep_alive(cluster, &mut conn).await {
                    return format!("TTL renewal failed: {e}");
                }
                // The subscriber connection must carry this node's canaries back: an open
                // connection that stopped delivering (Centrifugo #1189) is replaced.
                if heard.elapsed() > CANARY_SILENCE {
                    return format!(
                        "subscriber connection silent for {} ms (the canary published through redis did not come back)",
                        heard.elapsed().as_millis()
                    );
                }
                if let Err(e) = send_canary(cluster, &mut conn, ticks).await {
                    return format!("canary publish failed: {e}");
                }
                if !cluster.health.is_up() {
                    // A request failed meanwhile, but the connection answers again.
                    cluster.health.set_up();
                }
            }
        }
    }
}

/// How often a node claims overdue critical events.
const CLAIM_EVERY: Duration = Duration::from_millis(250);

/// Every [`CLAIM_EVERY`], claims up to 100 overdue critical events (the script removes each
/// from the deadline set as it returns it, so exactly one node escalates it) and escalates
/// the unacknowledged ones. An event acknowledged on any node is dropped by the script. A
/// node that dies between the claim and the hook loses that escalation (at most once).
pub(crate) async fn claim_overdue(cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(CLAIM_EVERY);
    loop {
        tick.tick().await;
        let Ok(mut conn) = cluster.command_conn() else {
            continue;
        };
        let mut inv = cluster
            .scripts
            .claim_overdue
            .key(format!("{}:dl", cluster.prefix));
        inv.arg(100).arg(&cluster.prefix);
        type Row = (String, String, String, Vec<u8>, String, String);
        let rows: redis::RedisResult<Vec<Row>> = inv.invoke_async(&mut conn).await;
        match rows {
            Ok(rows) => {
                for row in &rows {
                    cluster.escalate(row);
                }
            }
            Err(e) => {
                tracing::debug!(target: "agentcast::cluster", error = %e, "claim of overdue events failed")
            }
        }
    }
}

/// Writes the acks gathered since the last flush, every [`ACK_FLUSH`]; while Redis is down
/// they are kept (the highest per user).
pub(crate) async fn flush_acks(cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(ACK_FLUSH);
    loop {
        tick.tick().await;
        let pending = std::mem::take(&mut *cluster.acks.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            continue;
        }
        let Ok(mut conn) = cluster.command_conn() else {
            restore(&cluster, pending);
            continue;
        };
        let mut failed = false;
        for (user, seq) in &pending {
            let mut inv = cluster.scripts.ack_user.key(cluster.key(user, "m"));
            inv.arg(seq.min(&(1 << 53)));
            let r: redis::RedisResult<i64> = inv.invoke_async(&mut conn).await;
            failed |= r.is_err();
        }
        if failed {
            restore(&cluster, pending);
        }
    }
}

fn restore(cluster: &Cluster, pending: std::collections::HashMap<UserId, u64>) {
    let mut acks = cluster.acks.lock().unwrap_or_else(|e| e.into_inner());
    for (user, seq) in pending {
        let a = acks.entry(user).or_default();
        *a = (*a).max(seq);
    }
}
