//! The health state machine: a panicked worker is restarted (connections closed with 1011,
//! history kept), a stall is seen as loop lag, a silently dropping pipeline is caught by the
//! canary, exhausted restarts fail the node, and the canary stays out of the statistics.

mod common;

use std::time::{Duration, Instant};

use agentcast_engine::{
    ConnectOptions, EventKind, Fault, FaultRefused, HealthConfig, HealthReport, HealthState, Hub,
    HubConfig, Resume, Target, UserId,
};
use common::{drain_n, event, user};

fn monitored(shards: usize, max_restarts: u32) -> Hub {
    let mut cfg = HubConfig::default();
    cfg.shards = shards;
    let mut h = HealthConfig::default();
    h.interval = Some(Duration::from_millis(40));
    h.stall_degraded = Duration::from_millis(300);
    h.stall_failed = Duration::from_secs(30);
    h.restart_backoff = Duration::from_millis(300);
    h.max_restarts = max_restarts;
    h.fault_injection = true;
    cfg.health = h;
    Hub::start(cfg).expect("hub starts")
}

/// Waits until `pred` holds for the hub's health report, or panics with the last report.
fn wait_for(hub: &Hub, what: &str, pred: impl Fn(&HealthReport) -> bool) -> HealthReport {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = hub.health();
        if pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {r:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn state(r: &HealthReport, name: &str) -> Option<HealthState> {
    r.component(name).map(|c| c.state)
}

fn healthy(r: &HealthReport) -> bool {
    r.checked_ms > 0 && r.status == HealthState::Healthy
}

/// A user whose home is `shard`.
fn user_on(hub: &Hub, shard: usize) -> UserId {
    (0..)
        .map(|i| user(&format!("u{i}")))
        .find(|u| hub.shard_of(u) == shard)
        .expect("some user hashes to the shard")
}

#[test]
fn starts_healthy_with_every_component_and_a_working_canary() {
    let hub = monitored(2, 3);
    let r = wait_for(&hub, "canaries received", |r| {
        r.canary_received >= 4 && r.status == HealthState::Healthy
    });
    let names: Vec<&str> = r.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["shard-0", "shard-1", "publish", "delivery", "broker"]
    );
    // The canary is not traffic.
    let s = hub.stats();
    assert_eq!(s.total.connections, 0);
    assert_eq!(s.total.users, 0);
    assert_eq!(s.total.published_user, 0);
    assert_eq!(s.total.delivered, 0);
    assert_eq!(s.queue_depth(), 0, "canary frames are not queue depth");
    assert_eq!(hub.footprint_blocking().unwrap().connections, 0);
}

#[test]
fn a_broadcast_does_not_reach_the_canary() {
    let hub = monitored(2, 3);
    wait_for(&hub, "canaries up", |r| r.canary_received >= 2);
    let mut c = hub
        .connect(user("b1"), ConnectOptions::default())
        .wait()
        .unwrap();
    let receipt = hub
        .publish(
            Target::Broadcast,
            event(EventKind::ToolExecuting, "r", "{}"),
        )
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(receipt.connections, 1);
    assert_eq!(drain_n(&mut c, 1, Duration::from_secs(2)).len(), 1);
}

#[test]
fn a_panicked_worker_is_restarted_and_its_clients_resume_without_loss() {
    let hub = monitored(2, 3);
    wait_for(&hub, "healthy", healthy);
    let u = user_on(&hub, 0);
    let mut conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let first = hub
        .publish(
            Target::User(u.clone()),
            event(EventKind::AgentStarted, "r1", "{\"i\":1}"),
        )
        .unwrap()
        .wait()
        .unwrap()
        .seq
        .unwrap();
    assert_eq!(drain_n(&mut conn, 1, Duration::from_secs(2)).len(), 1);

    hub.inject_fault(0, Fault::Panic).unwrap();
    // Published while the worker waits for its restart: queued, served after it.
    let during = hub
        .publish(
            Target::User(u.clone()),
            event(EventKind::ToolExecuting, "r1", "{\"i\":2}"),
        )
        .unwrap();
    // Degraded because of the panic (on a loaded machine the watchdog may first report a
    // slow loop, which is also degraded but says nothing about the restart).
    let r = wait_for(&hub, "shard-0 degraded by the panic", |r| {
        state(r, "shard-0") == Some(HealthState::Degraded)
            && r.component("shard-0")
                .is_some_and(|c| c.reason.contains("injected fault"))
    });
    assert!(r.component("shard-0").unwrap().reason.contains("restart"));
    // The connection was closed with 1011.
    let deadline = Instant::now() + Duration::from_secs(2);
    while conn.close_code().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(conn.close_code(), Some(1011));
    drop(conn);

    let receipt = during.wait().unwrap();
    assert_eq!(receipt.seq, Some(first + 1));
    let r = wait_for(&hub, "healthy again", |r| {
        r.status == HealthState::Healthy && r.canary_received >= 4
    });
    let shard = r.component("shard-0").unwrap();
    assert_eq!(shard.recovery_attempts, 1);
    assert!(shard.transitions >= 2, "{shard:?}");
    assert!(r.transitions >= 2);

    // Resume after the first event: the one published during the restart arrives.
    let mut opts = ConnectOptions::default();
    opts.resume = Resume::After(first);
    let mut again = hub.connect(u, opts).wait().unwrap();
    let got = drain_n(&mut again, 1, Duration::from_secs(2));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["seq"], first + 1);
    assert_eq!(got[0]["data"]["i"], 2);
}

#[test]
fn a_stalled_worker_turns_degraded_then_recovers() {
    let hub = monitored(2, 3);
    wait_for(&hub, "healthy", healthy);
    hub.inject_fault(1, Fault::Stall(Duration::from_millis(1200)))
        .unwrap();
    let r = wait_for(&hub, "shard-1 degraded", |r| {
        state(r, "shard-1") == Some(HealthState::Degraded)
    });
    assert!(r.component("shard-1").unwrap().reason.contains("loop lag"));
    assert_eq!(r.status, HealthState::Degraded);
    wait_for(&hub, "healthy again", healthy);
}

#[test]
fn the_canary_catches_a_pipeline_that_silently_drops_everything() {
    let hub = monitored(2, 3);
    wait_for(&hub, "healthy", |r| {
        r.status == HealthState::Healthy && r.canary_received >= 2
    });
    hub.inject_fault(0, Fault::DropDeliveries(true)).unwrap();
    // Every thread is alive and every publish is answered...
    let u = user_on(&hub, 0);
    let receipt = hub
        .publish(Target::User(u), event(EventKind::AgentThinking, "r", "{}"))
        .unwrap()
        .wait();
    assert!(receipt.is_ok());
    // ...but the canary sees that nothing arrives.
    let r = wait_for(&hub, "delivery degraded", |r| {
        state(r, "delivery") == Some(HealthState::Degraded)
    });
    assert!(
        r.component("delivery")
            .unwrap()
            .reason
            .contains("canary not delivered on shard 0"),
        "{r:#?}"
    );
    assert_eq!(state(&r, "shard-0"), Some(HealthState::Healthy));
    hub.inject_fault(0, Fault::DropDeliveries(false)).unwrap();
    wait_for(&hub, "healthy again", healthy);
}

#[test]
fn exhausted_restarts_fail_the_node_instead_of_hanging() {
    let hub = monitored(2, 1);
    wait_for(&hub, "healthy", healthy);
    hub.inject_fault(0, Fault::Panic).unwrap();
    wait_for(&hub, "restarted once", |r| {
        r.component("shard-0")
            .is_some_and(|c| c.recovery_attempts == 1)
            && state(r, "shard-0") == Some(HealthState::Healthy)
    });
    hub.inject_fault(0, Fault::Panic).unwrap();
    let r = wait_for(&hub, "failed", |r| r.status == HealthState::Failed);
    assert_eq!(state(&r, "shard-0"), Some(HealthState::Failed));
    assert_eq!(state(&r, "publish"), Some(HealthState::Failed));
    assert!(
        r.failure_reasons().contains("restarts were exhausted"),
        "{r:#?}"
    );
    // Work for the dead shard fails at once instead of hanging.
    let u = user_on(&hub, 0);
    assert!(
        hub.publish(
            Target::User(u.clone()),
            event(EventKind::AgentStarted, "r", "{}")
        )
        .is_err()
    );
    assert!(hub.connect(u, ConnectOptions::default()).wait().is_err());
    assert_eq!(hub.inject_fault(0, Fault::Panic), Err(FaultRefused::Closed));
}

#[test]
fn fault_injection_is_refused_unless_enabled() {
    let hub = common::hub(1);
    assert_eq!(
        hub.inject_fault(0, Fault::Panic),
        Err(FaultRefused::Disabled)
    );
    // Without a monitor the report is computed on demand from the workers.
    let r = hub.health();
    assert_eq!(r.status, HealthState::Healthy);
    assert_eq!(state(&r, "shard-0"), Some(HealthState::Healthy));
}
