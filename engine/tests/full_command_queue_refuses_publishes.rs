//! A shard whose command queue holds `command_queue` publishes refuses further publishes with
//! `PublishError::Overloaded` before queuing anything (the refusal changes nothing and is
//! counted), while the commands of transports (connects) are still taken.

mod common;

use std::time::Duration;

use agentcast_engine::{ConnectOptions, EventKind, Fault, Hub, HubConfig, PublishError, Target};
use common::*;

const BOUND: usize = 100;

#[test]
fn a_stalled_shard_refuses_publishes_past_its_queue_bound_and_counts_them() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.command_queue = BOUND;
    cfg.health.fault_injection = true;
    let hub = Hub::start(cfg).unwrap();
    let u = user("flooded");
    // The worker sleeps: nothing leaves its queue meanwhile.
    hub.inject_fault(0, Fault::Stall(Duration::from_secs(2)))
        .unwrap();

    let mut accepted = 0u64;
    let refused = loop {
        match hub.send(
            Target::User(u.clone()),
            event(EventKind::ToolExecuting, "r", "{}"),
        ) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 10_000_000, "the queue never filled");
    };
    assert_eq!(refused, PublishError::Overloaded { capacity: BOUND });
    let broadcast = hub.publish(
        Target::Broadcast,
        event(EventKind::ToolExecuting, "r", "{}"),
    );
    assert!(
        matches!(broadcast, Err(PublishError::Overloaded { .. })),
        "a broadcast is refused too"
    );
    // A connect is not a publish: it is queued and answered once the stall ends.
    let conn = hub.connect(u.clone(), ConnectOptions::default()).wait();
    assert!(conn.is_ok(), "connect while the queue is full: {conn:?}");

    hub.sync_blocking(false).unwrap();
    let s = hub.stats().total;
    assert_eq!(
        s.published_user, accepted,
        "refused publishes changed nothing"
    );
    assert_eq!(s.published_broadcast, 0);
    assert_eq!(s.publishes_refused, 2);
    assert_eq!(
        accepted as usize, BOUND,
        "exactly the bound is admitted while nothing leaves the queue"
    );
}
