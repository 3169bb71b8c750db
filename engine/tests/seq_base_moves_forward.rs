//! A user state evicted and created again, even within the same millisecond, never reuses a
//! seq: the new state's seqs start above every seq its shard's evicted states issued, so a
//! resume with an old `last_seq` gets a gap instead of silently missing the new events.

mod common;

use agentcast_engine::{ConnectOptions, EventKind, Hub, HubConfig, Resume, Target};
use common::*;

#[test]
fn a_user_evicted_by_max_users_and_created_again_continues_above_its_old_seqs() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.max_users = 1;
    let hub = Hub::start(cfg).unwrap();
    let publish = |name: &str| {
        hub.publish(
            Target::User(user(name)),
            event(EventKind::ToolExecuting, "r", "{}"),
        )
        .unwrap()
        .wait()
        .unwrap()
        .seq
        .unwrap()
    };
    // Many rounds, so that some fall within one millisecond (where the clock alone would give
    // the new state the old one's base).
    for round in 0..200 {
        let a = format!("a{round}");
        let old = publish(&a);
        publish(&format!("b{round}")); // evicts a (one user per shard)
        let new = publish(&a); // evicts b, creates a again
        assert!(
            new > old,
            "round {round}: seq {new} reused or went back from {old}"
        );
        let mut opts = ConnectOptions::default();
        opts.resume = Resume::After(old - 1);
        let mut conn = hub.connect(user(&a), opts).wait().unwrap();
        let gap = conn.welcome().gap.expect("a gap for the evicted event");
        assert_eq!(gap.from, old);
        assert!(gap.to >= old && gap.to < new, "{gap:?}");
        assert_eq!(seqs(&drain(&mut conn)).last().copied(), Some(new));
    }
    assert!(hub.stats().total.users_evicted_over_limit >= 400);
}
