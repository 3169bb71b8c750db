//! Critical events not acknowledged within the deadline fire the escalation hook, off the
//! hot path, and are counted; acknowledged ones do not.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentcast_engine::{ConnectOptions, Escalation, EventKind, Hub, HubConfig, UnackedCritical};
use common::*;

#[derive(Default)]
struct Recorder(Mutex<Vec<UnackedCritical>>);

impl Escalation for Recorder {
    fn escalate(&self, e: UnackedCritical) {
        self.0.lock().unwrap().push(e);
    }
}

fn hub_with(rec: &Arc<Recorder>) -> Hub {
    let mut cfg = HubConfig::default();
    cfg.shards = 2;
    cfg.ack_deadline = Duration::from_millis(50);
    cfg.tick = Duration::from_millis(10);
    cfg.escalation = Some(rec.clone());
    Hub::start(cfg).unwrap()
}

fn wait_for(rec: &Recorder, n: usize) -> Vec<UnackedCritical> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = rec.0.lock().unwrap().clone();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn unacked_critical_event_is_escalated_with_user_run_and_seq() {
    let rec = Arc::new(Recorder::default());
    let hub = hub_with(&rec);
    let u = user("nobody-home");
    let seq = hub
        .emitter(u.clone(), "run-9")
        .agent_error(Default::default())
        .unwrap()
        .wait()
        .unwrap()
        .seq
        .unwrap();
    let got = wait_for(&rec, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].user, u);
    assert_eq!(got[0].seq, seq);
    assert_eq!(got[0].run_id.as_deref(), Some("run-9"));
    assert_eq!(got[0].kind, EventKind::AgentError);
    assert_eq!(got[0].connections, 0);
    hub.sync_blocking(false).unwrap();
    assert_eq!(hub.stats().total.escalated, 1);
}

#[test]
fn acked_critical_and_non_critical_events_are_not_escalated() {
    let rec = Arc::new(Recorder::default());
    let hub = hub_with(&rec);
    let u = user("diligent");
    let conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let run = hub.emitter(u.clone(), "r");
    let started = run
        .agent_started(Default::default())
        .unwrap()
        .wait()
        .unwrap()
        .seq
        .unwrap();
    run.tool_executing(Default::default())
        .unwrap()
        .wait()
        .unwrap();
    run.agent_thinking(Default::default())
        .unwrap()
        .wait()
        .unwrap();
    conn.ack(started);
    std::thread::sleep(Duration::from_millis(200));
    hub.sync_blocking(true).unwrap();
    assert!(rec.0.lock().unwrap().is_empty());
    assert_eq!(hub.stats().total.escalated, 0);
}

#[test]
fn a_blocking_hook_never_blocks_delivery() {
    struct Stuck;
    impl Escalation for Stuck {
        fn escalate(&self, _e: UnackedCritical) {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.ack_deadline = Duration::from_millis(1);
    cfg.tick = Duration::from_millis(1);
    cfg.escalation_queue = 4;
    cfg.escalation = Some(Arc::new(Stuck));
    let hub = Hub::start(cfg).unwrap();
    let u = user("busy");
    let mut conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let run = hub.emitter(u, "r");
    let start = Instant::now();
    for _ in 0..50 {
        run.agent_started(Default::default())
            .unwrap()
            .wait()
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "publishing stalled behind the hook"
    );
    assert_eq!(drain_n(&mut conn, 50, Duration::from_secs(5)).len(), 50);
    hub.sync_blocking(true).unwrap();
    let s = hub.stats().total;
    assert!(s.escalations_dropped > 0, "queue of 4 overflowed: {s:?}");
    assert_eq!(s.escalated, 50);
    // The stuck hook thread would make shutdown wait; leak the hub instead of joining.
    std::mem::forget(hub);
}
