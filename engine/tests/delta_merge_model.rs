//! Message deltas are never lost: for any interleaving of publishes (deltas of two messages,
//! droppable events between them), partial drains, disconnects and resumes, the text a
//! client reassembles from what it received equals the text published, byte for byte, and
//! merged frames cover exact seq ranges. Also the ring and history merges, one by one.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agentcast_engine::frame::payload_of;
use agentcast_engine::{
    ConnectOptions, Connection, Data, Event, EventKind, Hub, HubConfig, Priority, Resume, Target,
    UserId,
};
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;

#[derive(Debug, Clone)]
enum Op {
    Delta { msg: u8, text: String },
    Other { low: bool },
    Drain(usize),
    Reconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..2, "[a-zé\"\\\\ \n]{1,4}").prop_map(|(msg, text)| Op::Delta { msg, text }),
        2 => any::<bool>().prop_map(|low| Op::Other { low }),
        2 => (1usize..6).prop_map(Op::Drain),
        1 => Just(Op::Reconnect),
    ]
}

fn hub(ring: usize) -> Hub {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.ring_capacity = ring;
    cfg.write_batch = 1;
    cfg.history_len = 100_000;
    Hub::start(cfg).expect("hub starts")
}

fn delta(msg: u8, text: &str) -> Event {
    let data = serde_json::json!({"message_id": format!("m{msg}"), "delta": text});
    Event::new(
        EventKind::MessageDelta,
        "r1",
        Data::from_json(data.to_string()).unwrap(),
    )
}

/// What the client has seen: the last seq and each message's text.
#[derive(Default)]
struct Client {
    last_seq: u64,
    text: HashMap<String, String>,
    merged_frames: usize,
}

impl Client {
    fn take(&mut self, frames: &[Bytes]) -> Result<(), TestCaseError> {
        for f in frames {
            let v: Value = serde_json::from_slice(payload_of(f)).unwrap();
            let Some(seq) = v["seq"].as_u64() else {
                continue; // gap, or nothing of ours
            };
            let from = v["seq_from"].as_u64().unwrap_or(seq);
            prop_assert!(from <= seq);
            if seq <= self.last_seq {
                continue; // replayed again after a reconnect: already held
            }
            // Never a partial overlap: a resume cuts exactly after what the client holds.
            prop_assert!(
                from > self.last_seq,
                "frame {from}..={seq} overlaps {}",
                self.last_seq
            );
            if v["type"] == "message_delta" {
                if from < seq {
                    self.merged_frames += 1;
                }
                let id = v["data"]["message_id"].as_str().unwrap().to_owned();
                let d = v["data"]["delta"].as_str().unwrap();
                self.text.entry(id).or_default().push_str(d);
            }
            self.last_seq = seq;
        }
        Ok(())
    }
}

fn connect(hub: &Hub, u: &UserId, after: u64) -> Connection {
    let mut opts = ConnectOptions::default();
    opts.resume = Resume::After(after);
    hub.connect(u.clone(), opts).wait().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn reassembled_text_equals_published_text(
        ring in 1usize..6,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let hub = hub(ring);
        let u = UserId::new("reader").unwrap();
        let mut published: HashMap<String, String> = HashMap::new();
        let mut client = Client::default();
        // Start past the user's seq base, as a first connection resumes from its ack.
        let mut conn = hub.connect(u.clone(), ConnectOptions::default()).wait().unwrap();
        client.last_seq = conn.welcome().last_seq;
        let mut last = client.last_seq;
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Delta { msg, text } => {
                    published.entry(format!("m{msg}")).or_default().push_str(&text);
                    let r = hub.publish(Target::User(u.clone()), delta(msg, &text)).unwrap();
                    last = r.wait().unwrap().seq.unwrap();
                }
                Op::Other { low } => {
                    // Droppable: `last` stays the last delta's seq, which must arrive.
                    let mut e = Event::new(EventKind::ToolExecuting, "r1", Data::empty());
                    if low {
                        e.priority = Some(Priority::Low);
                    }
                    hub.publish(Target::User(u.clone()), e).unwrap().wait().unwrap();
                }
                Op::Drain(n) => {
                    out.clear();
                    conn.drain_into(&mut out, n);
                    client.take(&out)?;
                }
                Op::Reconnect => {
                    drop(conn);
                    conn = connect(&hub, &u, client.last_seq);
                }
            }
            if conn.close_code().is_some() {
                // Closed (1013: a message could not be queued): the client resumes.
                out.clear();
                conn.drain_into(&mut out, usize::MAX);
                client.take(&out)?;
                drop(conn);
                conn = connect(&hub, &u, client.last_seq);
            }
        }
        // Read everything that is left, up to the last delta.
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.last_seq < last && Instant::now() < deadline {
            out.clear();
            if conn.drain_into(&mut out, 64) == 0 {
                if conn.close_code().is_some() {
                    drop(conn);
                    conn = connect(&hub, &u, client.last_seq);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            client.take(&out)?;
        }
        for (id, text) in &published {
            prop_assert_eq!(client.text.get(id).map(String::as_str).unwrap_or(""), text.as_str(), "message {}", id);
        }
        hub.shutdown();
    }
}

/// Drains `conn` until `done` holds for the frames read so far (or 5 s pass), then once
/// more after 20 ms so an unexpected extra frame is seen too. Waiting on a condition, not on
/// a quiet moment: on a loaded machine the shard may refill the queue later than any fixed
/// pause.
fn raw_frames(conn: &mut Connection, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut raw = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let parse = |raw: &mut Vec<Bytes>, out: &mut Vec<Value>| {
        out.extend(
            raw.drain(..)
                .map(|b| serde_json::from_slice::<Value>(payload_of(&b)).unwrap()),
        );
    };
    loop {
        conn.drain_into(&mut raw, 1024);
        parse(&mut raw, &mut out);
        if done(&out) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(20));
    conn.drain_into(&mut raw, 1024);
    parse(&mut raw, &mut out);
    out
}

#[test]
fn a_full_ring_merges_deltas_and_counts_them() {
    let hub = hub(4);
    let u = UserId::new("slow").unwrap();
    let mut conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let mut text = String::new();
    for i in 0..200 {
        let t = format!("tok{i} ");
        text.push_str(&t);
        hub.publish(Target::User(u.clone()), delta(0, &t))
            .unwrap()
            .wait()
            .unwrap();
    }
    // The hand-off queue took 1 (write batch), the ring 4; everything after merged.
    let frames = raw_frames(&mut conn, |f| {
        f.iter()
            .filter_map(|f| f["data"]["delta"].as_str())
            .map(str::len)
            .sum::<usize>()
            >= text.len()
    });
    assert!(frames.len() < 20, "{} frames for 200 deltas", frames.len());
    let got: String = frames
        .iter()
        .map(|f| f["data"]["delta"].as_str().unwrap())
        .collect();
    assert_eq!(got, text);
    let merged = frames.iter().find(|f| f.get("seq_from").is_some()).unwrap();
    assert!(merged["seq_from"].as_u64() < merged["seq"].as_u64());
    assert_eq!(merged["type"], "message_delta");
    assert_eq!(merged["run_id"], "r1");
    assert!(hub.stats().total.deltas_merged >= 150);
    assert_eq!(hub.stats().dropped(Priority::Normal), 0);
    assert_eq!(conn.close_code(), None);
}

#[test]
fn history_keeps_a_message_as_one_entry_and_cuts_it_on_resume() {
    let hub = hub(256);
    let u = UserId::new("offline").unwrap();
    let mut seqs = Vec::new();
    let start = Event::new(
        EventKind::MessageStarted,
        "r1",
        Data::from_json(r#"{"message_id":"m0","role":"assistant"}"#).unwrap(),
    );
    hub.publish(Target::User(u.clone()), start)
        .unwrap()
        .wait()
        .unwrap();
    for i in 0..100 {
        let r = hub
            .publish(Target::User(u.clone()), delta(0, &format!("{i},")))
            .unwrap()
            .wait()
            .unwrap();
        seqs.push(r.seq.unwrap());
    }
    let done = Event::new(
        EventKind::MessageCompleted,
        "r1",
        Data::from_json(r#"{"message_id":"m0"}"#).unwrap(),
    );
    hub.publish(Target::User(u.clone()), done)
        .unwrap()
        .wait()
        .unwrap();
    let all: String = (0..100).map(|i| format!("{i},")).collect();
    assert_eq!(hub.stats().total.history_events, 3);
    assert_eq!(hub.stats().total.history_deltas_merged, 99);

    // A new connection: started, one delta with the whole text, completed, in order.
    let mut c = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    assert_eq!(c.welcome().replayed, 3);
    let f = raw_frames(&mut c, |f| f.len() >= 3);
    let types: Vec<&str> = f.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["message_started", "message_delta", "message_completed"]
    );
    assert_eq!(f[1]["data"]["delta"], all.as_str());
    assert_eq!(f[1]["seq_from"].as_u64(), Some(seqs[0]));
    assert_eq!(f[1]["seq"].as_u64(), Some(seqs[99]));
    drop(c);

    // A resume in the middle of the message: exactly the rest, from the first seq it lacks.
    let mut c = connect(&hub, &u, seqs[41]);
    let f = raw_frames(&mut c, |f| f.len() >= 2);
    let rest: String = (42..100).map(|i| format!("{i},")).collect();
    assert_eq!(f[0]["data"]["delta"], rest.as_str());
    assert_eq!(f[0]["seq_from"].as_u64(), Some(seqs[42]));
    assert_eq!(f[1]["type"], "message_completed");

    // A resume at the last delta gets only the completion.
    drop(c);
    let mut c = connect(&hub, &u, seqs[99]);
    let f = raw_frames(&mut c, |f| !f.is_empty());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["type"], "message_completed");
}

#[test]
fn message_events_are_not_dropped_by_a_full_ring() {
    // A ring full of message events and criticals: a droppable event is dropped, a message
    // event that cannot be merged closes the connection (1013) instead of being dropped.
    let hub = hub(2);
    let u = UserId::new("full").unwrap();
    let conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let started = |m: &str| {
        Event::new(
            EventKind::MessageStarted,
            "r1",
            Data::from_json(format!(r#"{{"message_id":"{m}"}}"#)).unwrap(),
        )
    };
    for m in ["a", "b", "c"] {
        hub.publish(Target::User(u.clone()), started(m))
            .unwrap()
            .wait()
            .unwrap();
    }
    assert_eq!(conn.close_code(), None);
    hub.publish(
        Target::User(u.clone()),
        Event::new(EventKind::ToolExecuting, "r1", Data::empty()),
    )
    .unwrap()
    .wait()
    .unwrap();
    assert_eq!(hub.stats().dropped(Priority::Normal), 1);
    assert_eq!(conn.close_code(), None);
    hub.publish(Target::User(u.clone()), started("d"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(conn.close_code(), Some(1013));
    assert_eq!(hub.stats().dropped(Priority::Normal), 1);
}
