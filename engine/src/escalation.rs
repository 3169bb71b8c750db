//! Escalation of critical events nobody acknowledged in time.
//!
//! A critical user event (`agent_started`, `agent_completed`, `agent_error` by default) is
//! tracked from publish until the user acks its seq. When [`HubConfig::ack_deadline`] passes
//! first (user offline, connection dead, queue overflow, client that never acks), the shard
//! worker pushes an [`UnackedCritical`] onto a bounded lock-free queue; a dedicated thread
//! calls the [`Escalation`] hook. The worker never waits: when the queue is full the
//! escalation is counted as dropped instead.
//!
//! A user whose state never had a connection is escalated only while
//! [`HubConfig::escalate_never_connected`] is true (the default); otherwise its overdue
//! events are counted in `escalations_skipped`. "Never" is since the state was created: it
//! lives for [`HubConfig::user_ttl`] after the last activity and not across a restart.
//!
//! [`HubConfig::escalate_never_connected`]: crate::HubConfig::escalate_never_connected
//! [`HubConfig::user_ttl`]: crate::HubConfig::user_ttl
//!
//! [`HubConfig::ack_deadline`]: crate::HubConfig::ack_deadline

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::sync::{Parker, Unparker};

use crate::event::{EventKind, UserId};

/// A critical event not acknowledged within its deadline.
#[derive(Debug, Clone)]
pub struct UnackedCritical {
    /// The user.
    pub user: UserId,
    /// The event's seq.
    pub seq: u64,
    /// Its run.
    pub run_id: Option<Arc<str>>,
    /// Its type.
    pub kind: EventKind,
    /// When it was published, ms since the Unix epoch.
    pub published_ms: u64,
    /// How many connections the user had when the deadline passed.
    pub connections: usize,
    /// Whether the user's state ever had a connection on this node (state lives for the
    /// user's TTL; a user evicted and seen again starts over as never connected).
    pub ever_connected: bool,
}

/// What the embedding server does with an escalation (log, count, call a webhook).
///
/// Called on the escalation thread, one event at a time. It may block (a webhook call), at
/// the cost of later escalations waiting in the bounded queue.
pub trait Escalation: Send + Sync + 'static {
    /// Handles one escalated event.
    fn escalate(&self, event: UnackedCritical);
}

/// The bounded queue and thread that call the hook.
pub(crate) struct Dispatcher {
    queue: Arc<ArrayQueue<UnackedCritical>>,
    unparker: Unparker,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Dispatcher {
    pub(crate) fn start(hook: Option<Arc<dyn Escalation>>, capacity: usize) -> Dispatcher {
        let queue = Arc::new(ArrayQueue::new(capacity.max(1)));
        let parker = Parker::new();
        let unparker = parker.unparker().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = hook.map(|hook| {
            let queue = Arc::clone(&queue);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("agentcast-escalation".into())
                .spawn(move || {
                    loop {
                        while let Some(e) = queue.pop() {
                            hook.escalate(e);
                        }
                        // Acquire pairs with the Release store in `stop()`: once seen, every
                        // escalation pushed before the stop has been popped above or is
                        // popped by the final drain below.
                        if stop.load(Ordering::Acquire) {
                            while let Some(e) = queue.pop() {
                                hook.escalate(e);
                            }
                            return;
                        }
                        parker.park();
                    }
                })
                .ok()
        });
        Dispatcher {
            queue,
            unparker,
            stop,
            thread: thread.flatten(),
        }
    }

    /// A handle workers use to hand escalations over.
    pub(crate) fn sender(&self) -> EscalationSender {
        EscalationSender {
            queue: self.thread.as_ref().map(|_| Arc::clone(&self.queue)),
            unparker: self.unparker.clone(),
        }
    }

    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.unparker.unpark();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The worker side of the dispatcher.
#[derive(Clone)]
pub(crate) struct EscalationSender {
    queue: Option<Arc<ArrayQueue<UnackedCritical>>>,
    unparker: Unparker,
}

impl EscalationSender {
    /// Hands `e` to the hook without blocking. Returns false when it had to be dropped
    /// (queue full); true when queued or when no hook is configured.
    pub(crate) fn send(&self, e: UnackedCritical) -> bool {
        match &self.queue {
            None => true,
            Some(q) => {
                let ok = q.push(e).is_ok();
                self.unparker.unpark();
                ok
            }
        }
    }
}
