//! A broker that stores a message's deltas merged (the Redis broker, docs/cluster.md §3.2)
//! hands the engine entries covering a range of seqs, in a seed and in a catch-up read. The
//! engine treats them as its own history would: a seed whose first entry is merged resumes
//! inside it without a false `gap`, and a delivered merged entry straddling the user's last
//! seq delivers only the part after it (the rest is a duplicate), as one delta.

mod common;

use agentcast_engine::delta::DeltaRun;
use agentcast_engine::frame::{EventFields, Origin, encode_event};
use agentcast_engine::{ConnectOptions, EventKind, HistoryEntry, Priority, Resume, Seed};
use bytes::Bytes;
use common::*;

fn delta_frame(seq: u64, text: &str) -> Bytes {
    let data = format!(r#"{{"message_id":"m1","delta":"{text}"}}"#);
    encode_event(&EventFields {
        kind: &EventKind::MessageDelta,
        origin: Origin::User { seq },
        run_id: Some("r1"),
        ts_ms: 1_000,
        priority: Priority::Normal,
        data: data.as_bytes(),
        extra: None,
    })
    .into_bytes()
}

/// Seqs 101..=105 with texts `a`, `b`, `c`, `d`, `e`, merged as the broker stores them.
fn merged_101_to_105() -> HistoryEntry {
    let run = DeltaRun::from_stored(&delta_frame(105, "e"), 101, b"abcd", &[1, 1, 1, 1])
        .expect("the parts fit");
    HistoryEntry::from_run(run, Priority::Normal, agentcast_engine::frame::now_ms())
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

/// `(seq_from, seq, text)` of each delta frame.
fn deltas(frames: &[serde_json::Value]) -> Vec<(u64, u64, String)> {
    frames
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "message_delta", "{f}");
            let seq = f["seq"].as_u64().unwrap();
            let from = f["seq_from"].as_u64().unwrap_or(seq);
            (from, seq, f["data"]["delta"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn a_seed_whose_first_entry_is_merged_resumes_inside_it_without_a_gap() {
    let hub = hub(1);
    let u = user("seeded");
    let mut conn = hub
        .connect(u, seeded(105, vec![merged_101_to_105()], 102))
        .wait()
        .unwrap();
    assert_eq!(conn.welcome().gap, None);
    assert_eq!(conn.welcome().last_seq, 105);
    assert_eq!(deltas(&drain(&mut conn)), [(103, 105, "cde".to_owned())]);
}

#[test]
fn a_delivered_merged_entry_straddling_the_last_seq_delivers_only_the_rest() {
    let hub = hub(1);
    let u = user("caught-up");
    let mut conn = hub
        .connect(u.clone(), seeded(100, Vec::new(), 100))
        .wait()
        .unwrap();
    // Two pieces arrive live, then a catch-up read returns the merged entry of all five.
    for (seq, text) in [(101, "a"), (102, "b")] {
        let now = agentcast_engine::frame::now_ms();
        let e = HistoryEntry::new(seq, Priority::Normal, now, delta_frame(seq, text));
        hub.deliver(u.clone(), e, 7, None).unwrap();
    }
    hub.deliver(u.clone(), merged_101_to_105(), 7, None)
        .unwrap();
    // And the same again: all of it is a duplicate now.
    hub.deliver(u.clone(), merged_101_to_105(), 7, None)
        .unwrap();
    let got = drain_n(&mut conn, 3, std::time::Duration::from_secs(2));
    assert_eq!(
        deltas(&got),
        [
            (101, 101, "a".to_owned()),
            (102, 102, "b".to_owned()),
            (103, 105, "cde".to_owned())
        ]
    );
    assert!(drain(&mut conn).is_empty(), "nothing more, no gap");
    // The node's history cache holds the message merged: a later connection resuming inside
    // it (no seed: the shard's own history) gets exactly the rest.
    let mut o = ConnectOptions::default();
    o.resume = Resume::After(103);
    let mut late = hub.connect(u, o).wait().unwrap();
    assert_eq!(late.welcome().gap, None);
    assert_eq!(deltas(&drain(&mut late)), [(104, 105, "de".to_owned())]);
}
