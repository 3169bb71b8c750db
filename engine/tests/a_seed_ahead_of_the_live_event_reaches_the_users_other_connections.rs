//! In cluster mode a connection's seed (the broker's read of the user's history) and the
//! live subscription travel separately, so a seed can hold an event the shard has not yet
//! received live: a second connection of the user opened right after a publish. The user's
//! connections already here must still get that event, once, even though its live copy is
//! then dropped as a duplicate (the user's last seq already covers it). Found by
//! `server/tests/reconnect_storm_resumes_every_client_exactly_once.rs`: a device that never
//! dropped missed one event, without a `gap`, when its sibling reconnected onto its node.

mod common;

use agentcast_engine::frame::{EventFields, Origin, encode_event, now_ms};
use agentcast_engine::{ConnectOptions, EventKind, HistoryEntry, Priority, Resume, Seed};
use common::*;

fn entry(seq: u64) -> HistoryEntry {
    let frame = encode_event(&EventFields {
        kind: &EventKind::ToolExecuting,
        origin: Origin::User { seq },
        run_id: Some("r"),
        ts_ms: 1_000,
        priority: Priority::Normal,
        data: b"{}",
        extra: None,
    })
    .into_bytes();
    HistoryEntry::new(seq, Priority::Normal, now_ms(), frame)
}

fn seeded(last_seq: u64, entries: Vec<HistoryEntry>, after: u64) -> ConnectOptions {
    let mut o = ConnectOptions::default();
    o.resume = Resume::After(after);
    o.seed = Some(Box::new(Seed {
        last_seq,
        ack: 0,
        entries,
    }));
    o
}

#[test]
fn a_seed_ahead_of_the_live_event_reaches_the_users_other_connections_once() {
    let hub = hub(1);
    let u = user("raced");
    let mut first = hub
        .connect(u.clone(), seeded(100, Vec::new(), 100))
        .wait()
        .unwrap();
    // 101 is published; the second connection's read sees it before its live copy arrives.
    let mut second = hub
        .connect(u.clone(), seeded(101, vec![entry(101)], 100))
        .wait()
        .unwrap();
    hub.deliver(u.clone(), entry(101), 0, None).unwrap();
    hub.deliver(u, entry(102), 0, None).unwrap();
    let timeout = std::time::Duration::from_secs(2);
    for conn in [&mut first, &mut second] {
        let got = drain_n(conn, 2, timeout);
        assert_eq!(seqs(&got), [101, 102], "{got:?}");
        assert!(drain(conn).is_empty(), "nothing more, no gap");
    }
}
