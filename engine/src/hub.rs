//! The hub: the engine's public face. Starts the shard workers, routes publishes and
//! connections to them, and gathers statistics.
//!
//! # Routing
//!
//! A user's home shard is `hash(user) % shards`; its connections, seq, ack cursor and history
//! all live there. [`Hub::publish`] to a user queues one command to that shard (which assigns
//! the seq, serializes once and queues the frame to each connection). A channel publish or
//! broadcast is serialized once on the caller's thread and the same `Bytes` is queued to every
//! shard.
//!
//! # Replies
//!
//! Operations that answer (a [`Receipt`], a [`Welcome`](crate::Welcome)) return a [`Reply`]: await it from
//! async code, call [`Reply::wait`] from a plain thread, or drop it to fire and forget (the
//! operation still happens). A reply resolves to [`HubClosed`] if the hub shut down first.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use ahash::RandomState;

use crate::command::Command;
use crate::config::HubConfig;
pub use crate::conn::handle::Connecting;
use crate::conn::shared::{ConnId, ConnShared, ConnectOptions};
use crate::enrich::rules::{self as enrich, Rules};
use crate::error::{HubClosed, PublishError};
use crate::escalation::Dispatcher;
use crate::event::{Event, Priority, Target, UserId};
use crate::frame::{self, EventFields, Origin};
use crate::health::monitor::{self, Monitor};
use crate::health::probe::Probe;
use crate::health::state::{
    self as health, Fault, FaultRefused, HealthReport, HealthShared, HealthState, WorkerHealth,
};
pub use crate::reply::{PublishReply, Receipt, Reply};
use crate::shard::{Footprint, Shard, coalesce_run};
use crate::stats::Stats;
use crate::worker::{self, WorkerShared};

/// Everything the hub's handles share.
pub(crate) struct HubInner {
    cfg: Arc<HubConfig>,
    workers: Vec<Arc<WorkerShared>>,
    /// Joined once, by the first `shutdown` (not on any hot path).
    threads: Mutex<Vec<JoinHandle<()>>>,
    dispatcher: Mutex<Option<Dispatcher>>,
    router: RandomState,
    next_conn: AtomicU64,
    health: HealthShared,
    monitor: Mutex<Option<Monitor>>,
    /// Enrichment rules for channel and broadcast events (stateless; user events are enriched
    /// by their home shard).
    rules: Rules,
}

impl Drop for HubInner {
    fn drop(&mut self) {
        stop(self);
    }
}

fn stop_monitor(inner: &HubInner) {
    if let Some(mut m) = inner
        .monitor
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        m.stop();
    }
}

fn stop(inner: &HubInner) {
    stop_monitor(inner);
    for w in &inner.workers {
        let _ = w.send(Command::Shutdown);
    }
    let threads = std::mem::take(&mut *inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
    for t in threads {
        let _ = t.join();
    }
    if let Some(mut d) = inner
        .dispatcher
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        d.stop();
    }
}

/// The engine. Cheap to clone (a reference count); all clones drive the same shards.
///
/// ```
/// use agentcast_engine::{Data, Event, EventKind, Hub, HubConfig, Target, UserId};
///
/// let hub = Hub::start(HubConfig::default()).unwrap();
/// let user = UserId::new("u1").unwrap();
/// let mut conn = hub.connect(user.clone(), Default::default()).wait().unwrap();
/// let receipt = hub
///     .publish(Target::User(user), Event::new(EventKind::AgentStarted, "run-1", Data::empty()))
///     .unwrap()
///     .wait()
///     .unwrap();
/// assert_eq!(receipt.connections, 1);
/// let mut frames = Vec::new();
/// conn.drain_into(&mut frames, 64);
/// assert_eq!(frames.len(), 1);
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Starts one worker thread per shard and the escalation thread.
    pub fn start(mut cfg: HubConfig) -> std::io::Result<Hub> {
        cfg.shards = cfg.shards.max(1);
        let escalation_hook = cfg.escalation.clone();
        let dispatcher = Dispatcher::start(escalation_hook, cfg.escalation_queue);
        let cfg = Arc::new(cfg);
        let mut workers = Vec::with_capacity(cfg.shards);
        let mut threads = Vec::with_capacity(cfg.shards);
        for i in 0..cfg.shards {
            let shard = Shard::new(Arc::clone(&cfg), dispatcher.sender());
            let (w, t) = worker::spawn(i, shard, cfg.command_queue)?;
            workers.push(w);
            threads.push(t);
        }
        let interval = cfg.health.interval;
        let rules = Rules::new(&cfg.enrichment);
        let hub = Hub {
            inner: Arc::new(HubInner {
                cfg,
                workers,
                threads: Mutex::new(threads),
                dispatcher: Mutex::new(Some(dispatcher)),
                router: RandomState::new(),
                next_conn: AtomicU64::new(1),
                health: HealthShared::new(),
                monitor: Mutex::new(None),
                rules,
            }),
        };
        if let Some(interval) = interval {
            let weak = Arc::downgrade(&hub.inner);
            let monitor = Monitor::start(move || weak.upgrade().map(Hub::from_inner), interval);
            *hub.inner.monitor.lock().unwrap_or_else(|e| e.into_inner()) = monitor;
        }
        Ok(hub)
    }

    pub(crate) fn from_inner(inner: Arc<HubInner>) -> Hub {
        Hub { inner }
    }

    /// The node's health (see [`crate::health`]): the monitor's latest report, or, when the
    /// monitor is off, one computed now from the workers' state (no canary).
    pub fn health(&self) -> HealthReport {
        if self.inner.cfg.health.interval.is_none() {
            monitor::check_once(self);
        }
        self.inner.health.snapshot()
    }

    /// The node's state from the latest check: one atomic read (for every upgrade).
    pub fn health_status(&self) -> HealthState {
        self.inner.health.status()
    }

    /// Injects `fault` into shard `shard`'s worker (tests of the health machinery). Refused
    /// unless [`HealthConfig::fault_injection`](crate::HealthConfig::fault_injection) is on.
    pub fn inject_fault(&self, shard: usize, fault: Fault) -> Result<(), FaultRefused> {
        if !self.inner.cfg.health.fault_injection {
            return Err(FaultRefused::Disabled);
        }
        let w = self
            .inner
            .workers
            .get(shard)
            .ok_or(FaultRefused::NoSuchShard)?;
        w.send(Command::Fault(fault))
            .map_err(|_| FaultRefused::Closed)
    }

    /// The configuration in force.
    pub fn config(&self) -> &HubConfig {
        &self.inner.cfg
    }

    /// The shard that owns `user`.
    pub fn shard_of(&self, user: &UserId) -> usize {
        (self.inner.router.hash_one(user) % self.inner.workers.len() as u64) as usize
    }

    /// Publishes `event` to `target`. Returns at once with a [`PublishReply`] that resolves to
    /// the [`Receipt`]; drop it to fire and forget.
    ///
    /// Cost on the caller's thread: for a user event, one command push (the home shard
    /// serializes after assigning the seq); for a channel or broadcast, one serialization and
    /// one command push per shard.
    ///
    /// # Errors
    ///
    /// [`PublishError::Closed`] after shutdown; [`PublishError::Overloaded`] when a shard's
    /// command queue is full (for a channel or broadcast: any shard's, checked before
    /// anything is queued). Either way nothing was published.
    pub fn publish(&self, target: Target, event: Event) -> Result<PublishReply, PublishError> {
        let ts_ms = self.inner.cfg.clock.now_ms();
        let priority = event
            .priority
            .unwrap_or_else(|| self.inner.cfg.priorities.priority(&event.kind));
        match target {
            Target::User(user) => {
                let w = &self.inner.workers[self.shard_of(&user)];
                let (tx, reply) = Reply::channel();
                w.send_publish(Command::Publish {
                    user,
                    event,
                    priority,
                    ts_ms,
                    born_us: health::mono_us(),
                    reply: Some(tx),
                })?;
                Ok(PublishReply {
                    parts: Vec::new(),
                    user: Some(reply),
                    total: 0,
                })
            }
            Target::Channel(_) | Target::Broadcast => {
                if let Some(w) = self.inner.workers.iter().find(|w| w.is_full()) {
                    return Err(w.refuse());
                }
                let channel = match &target {
                    Target::Channel(c) => Some(c.clone()),
                    _ => None,
                };
                let meta =
                    enrich::stateless_meta(&self.inner.rules, &event.kind, event.data.as_bytes());
                let frame = frame::encode_event(&EventFields {
                    kind: &event.kind,
                    origin: match &channel {
                        Some(c) => Origin::Channel(c.as_str()),
                        None => Origin::Broadcast,
                    },
                    run_id: event.run_id.as_deref(),
                    ts_ms,
                    priority,
                    data: event.data.as_bytes(),
                    extra: meta.as_deref(),
                })
                .into_bytes();
                let coalesce = coalesce_run(&event);
                let born_us = health::mono_us();
                let mut parts = Vec::with_capacity(self.inner.workers.len());
                for (i, w) in self.inner.workers.iter().enumerate() {
                    // One copy of the bytes per shard (not per recipient): each shard's
                    // recipients then bump a reference count on a cache line that only its
                    // core touches, instead of every core bouncing one shared counter.
                    let frame = if i == 0 {
                        frame.clone()
                    } else {
                        bytes::Bytes::copy_from_slice(&frame)
                    };
                    let (tx, reply) = Reply::channel();
                    w.send_checked_publish(Command::Fanout {
                        frame,
                        channel: channel.clone(),
                        priority,
                        coalesce_run: coalesce.clone(),
                        kind: event.kind.index() as u8,
                        born_us,
                        reply: Some(tx),
                    })?;
                    parts.push(reply);
                }
                Ok(PublishReply {
                    parts,
                    user: None,
                    total: 0,
                })
            }
        }
    }

    /// Publishes without asking for a receipt: the cheapest form (no reply channel). Refused
    /// as [`Hub::publish`] is.
    pub fn send(&self, target: Target, event: Event) -> Result<(), PublishError> {
        let ts_ms = self.inner.cfg.clock.now_ms();
        let priority = event
            .priority
            .unwrap_or_else(|| self.inner.cfg.priorities.priority(&event.kind));
        match target {
            Target::User(user) => {
                self.inner.workers[self.shard_of(&user)].send_publish(Command::Publish {
                    user,
                    event,
                    priority,
                    ts_ms,
                    born_us: health::mono_us(),
                    reply: None,
                })
            }
            target => {
                // Channel and broadcast: same path as `publish`, replies dropped.
                drop(self.publish(target, event)?);
                Ok(())
            }
        }
    }

    /// Confirms every event of `user` up to `seq` without a connection: the user-level form
    /// of [`Connection::ack`](crate::Connection::ack), for transports whose acks do not
    /// travel on the connection (server-sent events acknowledge with an HTTP request).
    /// Acknowledged events are never replayed again and critical ones stop being tracked; a
    /// seq past the user's latest counts as the latest; a user the home shard does not hold
    /// (never published to, or evicted) is a no-op. Fire-and-forget, O(1): one command to the
    /// home shard, queued after every earlier command of this thread to that shard (so a
    /// later [`Hub::connect`] of the user sees it).
    ///
    /// # Errors
    ///
    /// [`HubClosed`] after shutdown.
    pub fn ack(&self, user: &UserId, seq: u64) -> Result<(), HubClosed> {
        self.inner.workers[self.shard_of(user)].send(Command::Ack {
            user: user.clone(),
            seq,
        })
    }

    /// Registers a connection of `user` on its home shard. Replayed history (and a gap, if
    /// any) is queued to it before any live event.
    pub fn connect(&self, user: UserId, options: ConnectOptions) -> Connecting {
        let id = ConnId(self.inner.next_conn.fetch_add(1, Ordering::Relaxed));
        let w = Arc::clone(&self.inner.workers[self.shard_of(&user)]);
        let shared = Arc::new(ConnShared::new(self.inner.cfg.write_batch));
        let (tx, reply) = Reply::channel();
        let sent = w.send(Command::Connect {
            user: user.clone(),
            id,
            shared: Arc::clone(&shared),
            options,
            reply: tx,
        });
        Connecting {
            reply,
            pending: sent.ok().map(|_| (user, shared, w)),
        }
    }

    /// A snapshot of the statistics (totals and per shard). Reads atomics only; O(shards).
    pub fn stats(&self) -> Stats {
        Stats::from_shards(
            self.inner
                .workers
                .iter()
                .map(|w| w.counters.snapshot())
                .collect(),
        )
    }

    /// Sizes of every internal table, summed over shards, asked of each worker (so it is
    /// exact at the moment each shard answers). For memory-baseline checks.
    pub async fn footprint(&self) -> Result<Footprint, HubClosed> {
        let mut total = Footprint::default();
        for r in self.footprint_replies()? {
            total += r.await?;
        }
        Ok(total)
    }

    /// [`Hub::footprint`] for plain threads. See [`Reply::wait`] (same panics).
    pub fn footprint_blocking(&self) -> Result<Footprint, HubClosed> {
        let mut total = Footprint::default();
        for r in self.footprint_replies()? {
            total += r.wait()?;
        }
        Ok(total)
    }

    fn footprint_replies(&self) -> Result<Vec<Reply<Footprint>>, HubClosed> {
        self.inner
            .workers
            .iter()
            .map(|w| {
                let (tx, reply) = Reply::channel();
                w.send(Command::Inspect(Box::new(move |s: &mut Shard| {
                    let _ = tx.send(s.footprint());
                })))?;
                Ok(reply)
            })
            .collect()
    }

    /// Waits until every shard has handled every command queued before this call, so that
    /// [`Hub::stats`] reflects them. With `housekeeping`, each shard also runs its
    /// housekeeping (deadlines, eviction) now rather than at its next tick.
    pub async fn sync(&self, housekeeping: bool) -> Result<(), HubClosed> {
        for r in self.sync_replies(housekeeping)? {
            r.await?;
        }
        Ok(())
    }

    /// [`Hub::sync`] for plain threads. See [`Reply::wait`] (same panics).
    pub fn sync_blocking(&self, housekeeping: bool) -> Result<(), HubClosed> {
        for r in self.sync_replies(housekeeping)? {
            r.wait()?;
        }
        Ok(())
    }

    fn sync_replies(&self, housekeeping: bool) -> Result<Vec<Reply<()>>, HubClosed> {
        self.inner
            .workers
            .iter()
            .map(|w| {
                if housekeeping {
                    // Its own command: an `Inspect` publishes the counters before it runs, so
                    // the answering command below also publishes what housekeeping counted
                    // (escalations, evictions) before the caller reads `stats`.
                    w.send(Command::Inspect(Box::new(|s: &mut Shard| {
                        let now = s.clock().now_ms();
                        s.housekeeping(now);
                    })))?;
                }
                let (tx, reply) = Reply::channel();
                w.send(Command::Inspect(Box::new(move |_: &mut Shard| {
                    let _ = tx.send(());
                })))?;
                Ok(reply)
            })
            .collect()
    }

    /// Begins a graceful shutdown and returns at once: from now on publishes, connects and
    /// subscriptions are refused ([`HubClosed`]), while every frame already queued to a
    /// connection (its ring and its hand-off queue) keeps flowing to its transport; each
    /// connection is asked to close with 1001 once everything queued to it was handed over,
    /// so a transport that writes what it drains before the close writes every frame a
    /// receipt counted. Frames a connection leaves queued when its transport drops it are
    /// counted in [`ShardStats::shutdown_unwritten`](crate::stats::ShardStats). Call
    /// [`Hub::shutdown`] to finish (for example when the transports are gone or a grace
    /// period is over). Stops the health monitor (joining its thread). Idempotent.
    pub fn begin_shutdown(&self) {
        stop_monitor(&self.inner);
        for w in &self.inner.workers {
            let _ = w.send(Command::Drain);
        }
    }

    /// Asks every connection to close with 1001, stops the workers and waits for them.
    /// Frames still in a connection's ring are discarded and counted in
    /// [`ShardStats::shutdown_unwritten`](crate::stats::ShardStats); its hand-off queue stays
    /// for the transport to write before the close. Later operations fail with
    /// [`HubClosed`]. Idempotent. For a shutdown that loses nothing, call
    /// [`Hub::begin_shutdown`] first.
    pub fn shutdown(&self) {
        stop(&self.inner);
    }

    /// The shard workers (for `crate::sequenced`).
    pub(crate) fn inner_workers(&self) -> &[Arc<WorkerShared>] {
        &self.inner.workers
    }

    /// The stateless enrichment rules (for `crate::sequenced`).
    pub(crate) fn inner_rules(&self) -> &Rules {
        &self.inner.rules
    }

    /// Resolves a priority as a publish would.
    pub fn priority_of(&self, event: &Event) -> Priority {
        event
            .priority
            .unwrap_or_else(|| self.inner.cfg.priorities.priority(&event.kind))
    }
}

/// What the health monitor and the canary use of the hub (see [`Probe`]).
impl Probe for Hub {
    fn config(&self) -> &HubConfig {
        Hub::config(self)
    }

    fn worker_health(&self) -> Vec<&WorkerHealth> {
        self.inner.workers.iter().map(|w| &w.health).collect()
    }

    fn command_queue_depth(&self) -> usize {
        self.inner.workers.iter().map(|w| w.queue_len()).sum()
    }

    fn command_queue_depths(&self) -> Vec<usize> {
        self.inner.workers.iter().map(|w| w.queue_len()).collect()
    }

    fn health_shared(&self) -> &HealthShared {
        &self.inner.health
    }

    fn internal_user_on(&self, shard: usize) -> UserId {
        (0u64..)
            .map(|k| UserId::internal(&format!("canary-{shard}-{k}")))
            .find(|u| self.shard_of(u) == shard)
            .unwrap_or_else(|| UserId::internal("canary"))
    }

    fn stats(&self) -> Stats {
        Hub::stats(self)
    }

    fn connect(&self, user: UserId, options: ConnectOptions) -> Connecting {
        Hub::connect(self, user, options)
    }

    fn send(&self, target: Target, event: Event) -> Result<(), PublishError> {
        Hub::send(self, target, event)
    }
}
