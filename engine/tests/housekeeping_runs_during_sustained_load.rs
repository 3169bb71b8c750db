//! Housekeeping (ack-deadline escalation, idle-user eviction) is not starved by a worker
//! whose command queue never drains: it runs as soon as a tick is overdue, in the middle of a
//! burst of commands, not only once the queue is empty.

mod common;

use std::time::Duration;

use agentcast_engine::{EventKind, Fault, Hub, HubConfig, Target};
use common::*;

#[test]
fn an_overdue_ack_deadline_is_escalated_before_a_long_burst_is_drained() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    // Due as soon as it is published: the question is only *when* housekeeping looks.
    cfg.ack_deadline = Duration::ZERO;
    cfg.tick = Duration::from_millis(10);
    cfg.health.fault_injection = true;
    let hub = Hub::start(cfg).unwrap();

    // Everything below queues up behind the stall, so the worker finds one long burst: the
    // critical event, 2,000 other publishes, then the probe. The stall is far longer than a
    // tick, so a tick is overdue as soon as the worker resumes.
    hub.inject_fault(0, Fault::Stall(Duration::from_millis(300)))
        .unwrap();
    hub.send(
        Target::User(user("offline")),
        event(EventKind::AgentStarted, "r", "{}"),
    )
    .unwrap();
    let busy = user("busy");
    for i in 0..2_000 {
        hub.send(
            Target::User(busy.clone()),
            event(EventKind::ToolExecuting, "r", &format!("{{\"i\":{i}}}")),
        )
        .unwrap();
    }
    // Answered when the worker reaches it, behind the whole burst: a queue-draining worker
    // that runs housekeeping only when idle still holds the deadline here.
    let during = hub.footprint_blocking().unwrap();
    assert_eq!(
        during.deadlines, 0,
        "the overdue deadline was handled inside the burst: {during:?}"
    );
    hub.sync_blocking(false).unwrap();
    assert_eq!(hub.stats().total.escalated, 1);
}
