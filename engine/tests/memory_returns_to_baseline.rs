//! After 100,000 connect/disconnect cycles (with events and subscriptions along the way) and
//! the user TTL, no state of any user remains: every table of every shard is empty again.

mod common;

use std::time::Duration;

use agentcast_engine::{ChannelName, ConnectOptions, EventKind, Footprint, Hub, HubConfig, Target};
use common::*;

#[test]
fn hundred_thousand_cycles_leave_no_state_behind() {
    let mut cfg = HubConfig::default();
    cfg.shards = 2;
    cfg.user_ttl = Duration::from_millis(0);
    cfg.ack_deadline = Duration::from_millis(0);
    let hub = Hub::start(cfg).unwrap();
    let before = hub.footprint_blocking().unwrap();
    assert_eq!(before, Footprint::default());
    let chan = ChannelName::new("job:1").unwrap();
    const CYCLES: usize = 100_000;
    const BATCH: usize = 1_000;
    for b in 0..CYCLES / BATCH {
        let pending: Vec<_> = (0..BATCH)
            .map(|i| {
                hub.connect(
                    user(&format!("cycle-{}", (b * BATCH + i) % 25_000)),
                    ConnectOptions::default(),
                )
            })
            .collect();
        let conns: Vec<_> = pending.into_iter().map(|c| c.wait().unwrap()).collect();
        // Some traffic so histories, deadlines and channel indexes fill too.
        conns[0].subscribe(chan.clone()).wait().unwrap().unwrap();
        hub.publish(
            Target::User(conns[1].user().clone()),
            event(EventKind::AgentStarted, "r", "{}"),
        )
        .unwrap()
        .wait()
        .unwrap();
        hub.publish(
            Target::Channel(chan.clone()),
            event(EventKind::ToolCompleted, "r", "{}"),
        )
        .unwrap()
        .wait()
        .unwrap();
        drop(conns);
    }
    hub.sync_blocking(false).unwrap();
    let s = hub.stats().total;
    assert_eq!(s.connects, CYCLES as u64);
    assert_eq!(s.disconnects, CYCLES as u64);
    hub.sync_blocking(true).unwrap();
    let after = hub.footprint_blocking().unwrap();
    assert_eq!(after, Footprint::default(), "state left behind: {after:?}");
    let s = hub.stats().total;
    assert_eq!(
        (s.users, s.connections, s.channels, s.backlog, s.in_flight()),
        (0, 0, 0, 0, 0)
    );
    assert!(s.users_evicted >= 25_000);
}

#[test]
fn idle_user_state_is_kept_until_the_ttl() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.user_ttl = Duration::from_secs(3600);
    let hub = Hub::start(cfg).unwrap();
    drop(
        hub.connect(user("stays"), ConnectOptions::default())
            .wait()
            .unwrap(),
    );
    hub.sync_blocking(true).unwrap();
    assert_eq!(hub.footprint_blocking().unwrap().users, 1);
}

#[test]
fn retained_history_outlives_the_ttl_until_it_ages_out() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.user_ttl = Duration::from_millis(0);
    cfg.retain_history = true;
    cfg.history_max_age = Duration::from_millis(100);
    let hub = Hub::start(cfg).unwrap();
    hub.publish(
        Target::User(user("kept")),
        event(EventKind::ToolCompleted, "r", "{}"),
    )
    .unwrap()
    .wait()
    .unwrap();
    hub.sync_blocking(true).unwrap();
    assert_eq!(hub.footprint_blocking().unwrap().history_events, 1);
    std::thread::sleep(Duration::from_millis(150));
    hub.sync_blocking(true).unwrap();
    assert_eq!(hub.footprint_blocking().unwrap(), Footprint::default());
}
