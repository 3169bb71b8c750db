//! The hub driven by a [`ManualClock`] ([`HubConfig::clock`]): idle-user TTLs, the seq
//! clock cap and ack deadlines without sleeping. Housekeeping runs when the test asks
//! ([`Hub::sync_blocking`] with `true`; the tick is an hour), at the clock's time.

use std::sync::{Arc, mpsc};
use std::time::Duration;

use agentcast_engine::{
    Data, Escalation, Event, EventKind, Hub, HubConfig, ManualClock, Target, UnackedCritical,
    UserId,
};

const T0: u64 = 1_700_000_000_000;

fn hub(clock: &ManualClock, f: impl FnOnce(&mut HubConfig)) -> Hub {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.tick = Duration::from_secs(3600);
    cfg.clock = Arc::new(clock.clone());
    f(&mut cfg);
    Hub::start(cfg).expect("hub starts")
}

fn event(kind: EventKind) -> Event {
    Event::new(kind, "run-1", Data::empty())
}

fn publish(hub: &Hub, u: &UserId, kind: EventKind) -> u64 {
    hub.publish(Target::User(u.clone()), event(kind))
        .unwrap()
        .wait()
        .unwrap()
        .seq
        .unwrap()
}

#[test]
fn an_idle_user_is_evicted_when_the_clock_passes_its_ttl() {
    let clock = ManualClock::at(T0);
    let hub = hub(&clock, |c| c.user_ttl = Duration::from_secs(300));
    let u = UserId::new("idle").unwrap();
    publish(&hub, &u, EventKind::ToolExecuting);
    clock.advance(299_999);
    hub.sync_blocking(true).unwrap();
    assert_eq!(hub.stats().total.users_evicted, 0);
    assert_eq!(hub.footprint_blocking().unwrap().users, 1);
    clock.advance(1);
    hub.sync_blocking(true).unwrap();
    assert_eq!(hub.stats().total.users_evicted, 1);
    assert_eq!(hub.footprint_blocking().unwrap().users, 0);
}

#[test]
fn the_seq_clock_cap_waits_on_the_hubs_clock() {
    let clock = ManualClock::at(T0);
    let hub = hub(&clock, |c| c.history_len = 10);
    let u = UserId::new("fast").unwrap();
    let seqs: Vec<u64> = (0..1_500)
        .map(|_| publish(&hub, &u, EventKind::ToolExecuting))
        .collect();
    assert_eq!(seqs[0], T0 * 1000 + 1, "the base is the hub clock's time");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    // The 1,000th seq is (T0 + 1) × 1000: it waited for T0 + 1, which the wait moved to.
    assert_eq!(clock.waits(), vec![T0 + 1]);
    assert_eq!(clock.now_ms(), T0 + 1);
    hub.sync_blocking(false).unwrap();
    assert_eq!(hub.stats().total.seq_clock_waits, 1);
}

struct Hook(std::sync::Mutex<mpsc::Sender<UnackedCritical>>);

impl Escalation for Hook {
    fn escalate(&self, e: UnackedCritical) {
        let _ = self.0.lock().unwrap().send(e);
    }
}

#[test]
fn an_unacked_critical_event_is_escalated_when_the_clock_passes_its_deadline() {
    let clock = ManualClock::at(T0);
    let (tx, rx) = mpsc::channel();
    let hub = hub(&clock, |c| {
        c.ack_deadline = Duration::from_secs(30);
        c.escalation = Some(Arc::new(Hook(std::sync::Mutex::new(tx))));
    });
    let u = UserId::new("offline").unwrap();
    let conn = hub.connect(u.clone(), Default::default()).wait().unwrap();
    let acked = publish(&hub, &u, EventKind::AgentStarted);
    conn.ack(acked);
    clock.advance(1_000);
    let unacked = publish(&hub, &u, EventKind::AgentCompleted);
    clock.advance(29_999);
    hub.sync_blocking(true).unwrap();
    assert_eq!(
        hub.stats().total.escalated,
        0,
        "the first was acked in time"
    );
    clock.advance(1);
    hub.sync_blocking(true).unwrap();
    assert_eq!(hub.stats().total.escalated, 1);
    let e = rx.recv_timeout(Duration::from_secs(10)).expect("escalated");
    assert_eq!(
        (e.seq, e.published_ms, e.connections),
        (unacked, T0 + 1_000, 1)
    );
    assert_eq!(e.kind, EventKind::AgentCompleted);
    drop(conn);
}
