//! Per-user history: offline events are kept, resume replays after `last_seq` (critical
//! first), and a resume past what is held reports a gap.

mod common;

use std::time::Duration;

use agentcast_engine::{ConnectOptions, EventKind, Gap, Hub, HubConfig, Resume, Target};
use common::*;

#[test]
fn events_published_while_offline_arrive_on_next_connect() {
    let hub = hub(2);
    let u = user("offline");
    for i in 0..3 {
        hub.publish(
            Target::User(u.clone()),
            event(EventKind::ToolExecuting, "r", &format!("{{\"i\":{i}}}")),
        )
        .unwrap()
        .wait()
        .unwrap();
    }
    let mut conn = hub.connect(u, ConnectOptions::default()).wait().unwrap();
    assert_eq!(conn.welcome().replayed, 3);
    let frames = drain(&mut conn);
    let data: Vec<i64> = frames
        .iter()
        .map(|f| f["data"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(data, [0, 1, 2]);
    let s = seqs(&frames);
    assert_eq!(s.last().copied(), Some(conn.welcome().last_seq));
    assert!(
        s.windows(2).all(|w| w[1] == w[0] + 1),
        "seqs increase by one: {s:?}"
    );
}

#[test]
fn resume_replays_after_last_seq_with_critical_first() {
    let hub = hub(1);
    let u = user("resumer");
    let run = hub.emitter(u.clone(), "r1");
    let first = run
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
    run.agent_completed(Default::default())
        .unwrap()
        .wait()
        .unwrap();
    let mut opts = ConnectOptions::default();
    opts.resume = Resume::After(first);
    let mut conn = hub.connect(u, opts).wait().unwrap();
    let frames = drain(&mut conn);
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["agent_completed", "tool_executing", "agent_thinking"]
    );
    assert_eq!(seqs(&frames), [first + 3, first + 1, first + 2]);
}

#[test]
fn resume_beyond_history_reports_gap_first() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.history_len = 2;
    let hub = Hub::start(cfg).unwrap();
    let u = user("gappy");
    let mut seqs_published = Vec::new();
    for _ in 0..5 {
        let r = hub
            .publish(
                Target::User(u.clone()),
                event(EventKind::ToolCompleted, "r", "{}"),
            )
            .unwrap()
            .wait()
            .unwrap();
        seqs_published.push(r.seq.unwrap());
    }
    let mut opts = ConnectOptions::default();
    opts.resume = Resume::After(seqs_published[0]);
    let mut conn = hub.connect(u, opts).wait().unwrap();
    assert_eq!(
        conn.welcome().gap,
        Some(Gap {
            from: seqs_published[1],
            to: seqs_published[2]
        })
    );
    let frames = drain(&mut conn);
    assert_eq!(frames[0]["type"], "gap");
    assert_eq!(frames[0]["from"].as_u64(), Some(seqs_published[1]));
    assert_eq!(frames[0]["to"].as_u64(), Some(seqs_published[2]));
    assert_eq!(seqs(&frames[1..]), &seqs_published[3..]);
    assert_eq!(hub.stats().total.gaps, 1);
}

#[test]
fn history_age_limit_expires_events() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.history_max_age = Duration::from_millis(30);
    let hub = Hub::start(cfg).unwrap();
    let u = user("aging");
    hub.publish(
        Target::User(u.clone()),
        event(EventKind::ToolCompleted, "r", "{}"),
    )
    .unwrap()
    .wait()
    .unwrap();
    std::thread::sleep(Duration::from_millis(80));
    let mut conn = hub.connect(u, ConnectOptions::default()).wait().unwrap();
    assert_eq!(conn.welcome().replayed, 0);
    let frames = drain(&mut conn);
    assert_eq!(frames.len(), 1, "only the gap frame: {frames:?}");
    assert_eq!(frames[0]["type"], "gap");
}

#[test]
fn live_events_reach_every_device_of_the_user_in_order() {
    let hub = hub(2);
    let u = user("multi");
    let mut phone = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let mut laptop = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let run = hub.emitter(u, "r");
    let r = run
        .agent_started(Default::default())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(r.connections, 2);
    for c in [&mut phone, &mut laptop] {
        let f = drain(c);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0]["type"], "agent_started");
        assert_eq!(f[0]["run_id"], "r");
        assert_eq!(f[0]["priority"], "critical");
        assert_eq!(f[0]["seq"].as_u64(), r.seq);
        assert!(f[0]["ts"].as_str().unwrap().ends_with('Z'));
    }
}
