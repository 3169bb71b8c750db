//! Escalation of critical events nobody acknowledged in time: a counter, an aggregated
//! warn-level log, and an optional webhook.
//!
//! The engine calls [`WebhookEscalation::escalate`] on its escalation thread. That call only
//! counts, hands the event to the [log aggregator](EscalationLog) and `try_send`s it into a
//! bounded queue, so it never blocks (and the engine's own queue in front of it is bounded
//! too). The task returned by [`WebhookEscalation::new`] writes the log's periodic summary
//! and, with a webhook configured, POSTs each escalation as JSON, at most
//! `webhook_concurrency` at once (see [`webhook`]):
//!
//! ```json
//! {"event":"unacked_critical","user_id":"u1","run_id":"run-7","seq":1732445012000001,
//!  "type":"agent_error","published_at":"2026-11-24T10:03:32.000Z","connections":0,
//!  "ever_connected":true,"node":"127.0.0.1:8080"}
//! ```
//!
//! # Amplification
//!
//! Nothing here grows with the number of escalations: the log writes at most one line per
//! `log_interval_ms` (the first escalation after a quiet interval in full, then a summary with
//! the count and the first few users), the webhook holds at most `webhook_concurrency`
//! requests and `webhook_queue` waiting escalations (the rest are dropped and counted), and
//! the engine's queue is bounded. Users that never connected are escalated or skipped by the
//! `never_connected` policy (see [`crate::config::NeverConnected`]).
//!
//! Only `http://` webhook URLs are supported; put a TLS-terminating relay in front of an
//! `https://` receiver.

mod log;
mod webhook;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use agentcast_engine::{Escalation, UnackedCritical};
use tokio::sync::mpsc;

pub use log::{EscalationLine, EscalationLog, USERS_NAMED};
pub use webhook::WebhookTarget;

use crate::config::EscalationSettings;
use crate::metrics::{ServerMetrics, inc};
use log::Throttle;
use webhook::Webhook;

/// The server's [`Escalation`] hook. See the [module docs](self).
#[derive(Debug)]
pub struct WebhookEscalation {
    metrics: Arc<ServerMetrics>,
    queue: Option<mpsc::Sender<UnackedCritical>>,
    log: Arc<EscalationLog>,
    ack_deadline: Duration,
    /// Throttles the "webhook queue full" line.
    drops: Throttle,
}

impl WebhookEscalation {
    /// The hook, and the task that must be spawned on a tokio runtime: it writes the log's
    /// periodic summaries and (with a webhook configured) delivers the POSTs. The task ends
    /// once the hook is dropped (the engine shut down) and the last POST finished.
    pub fn new(
        settings: &EscalationSettings,
        node: String,
        metrics: Arc<ServerMetrics>,
    ) -> (WebhookEscalation, impl Future<Output = ()> + Send + 'static) {
        let interval = Duration::from_millis(settings.log_interval_ms.max(1));
        let ack_deadline = Duration::from_millis(settings.ack_deadline_ms);
        let log = Arc::new(EscalationLog::new(interval));
        let target = settings
            .webhook_url
            .as_deref()
            .and_then(|u| WebhookTarget::parse(u).ok());
        let (queue, delivery) = match target {
            Some(target) => {
                let (tx, rx) = mpsc::channel(settings.webhook_queue.max(1));
                let hook = Arc::new(Webhook {
                    target,
                    node,
                    attempts: settings.webhook_attempts.max(1),
                    timeout: Duration::from_millis(settings.webhook_timeout_ms.max(1)),
                    metrics: Arc::clone(&metrics),
                    failures: Throttle::new(interval),
                });
                (Some(tx), Some((rx, hook, settings.webhook_concurrency)))
            }
            None => (None, None),
        };
        let flusher = flush_periodically(Arc::downgrade(&log), ack_deadline, Arc::clone(&metrics));
        let task = async move {
            let deliver = async move {
                if let Some((rx, hook, concurrency)) = delivery {
                    webhook::deliver_all(rx, hook, concurrency).await;
                }
            };
            tokio::join!(flusher, deliver);
        };
        (
            WebhookEscalation {
                metrics,
                queue,
                log,
                ack_deadline,
                drops: Throttle::new(interval),
            },
            task,
        )
    }
}

impl Escalation for WebhookEscalation {
    fn escalate(&self, e: UnackedCritical) {
        inc(&self.metrics.escalations);
        let now = Instant::now();
        if let Some(line) = self.log.record(&e, now) {
            write(&line, self.ack_deadline, &self.metrics);
        }
        if let Some(q) = &self.queue
            && q.try_send(e).is_err()
        {
            inc(&self.metrics.webhook_dropped);
            if let Some(held_back) = self.drops.allow(now) {
                tracing::warn!(
                    target: "agentcast::escalation",
                    held_back,
                    "escalation webhook queue full (webhook_queue): escalation not posted; \
                     {held_back} more dropped since the last such line; all are counted in \
                     agentcast_webhook_dropped_total — the webhook is slow or down"
                );
            }
        }
    }
}

impl Drop for WebhookEscalation {
    /// Writes what the log still counts (the engine shut down).
    fn drop(&mut self) {
        if let Some(line) = self.log.take(Instant::now()) {
            write(&line, self.ack_deadline, &self.metrics);
        }
    }
}

/// Writes the log's due summary every half interval, until the hook is gone.
async fn flush_periodically(
    log: Weak<EscalationLog>,
    ack_deadline: Duration,
    metrics: Arc<ServerMetrics>,
) {
    let Some(period) = log.upgrade().map(|l| l.interval() / 2) else {
        return;
    };
    loop {
        tokio::time::sleep(period.max(Duration::from_millis(1))).await;
        let Some(log) = log.upgrade() else {
            return;
        };
        if let Some(line) = log.flush(Instant::now()) {
            write(&line, ack_deadline, &metrics);
        }
    }
}

/// One warn-level line under `agentcast::escalation`, counted in `escalation_log_lines`.
fn write(line: &EscalationLine, ack_deadline: Duration, metrics: &ServerMetrics) {
    inc(&metrics.escalation_log_lines);
    let message = line.message(ack_deadline);
    match line {
        EscalationLine::One {
            user,
            run_id,
            seq,
            event_type,
            connections,
            ever_connected,
        } => tracing::warn!(
            target: "agentcast::escalation",
            user_id = %user,
            run_id = %run_id,
            seq,
            event_type = %event_type,
            connections,
            ever_connected,
            "{message}"
        ),
        EscalationLine::Summary { events, .. } => tracing::warn!(
            target: "agentcast::escalation",
            events,
            "{message}"
        ),
    }
}
