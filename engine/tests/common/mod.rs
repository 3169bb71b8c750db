//! Helpers shared by the engine's integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::{Duration, Instant};

use agentcast_engine::frame::payload_of;
use agentcast_engine::{Connection, Data, Event, EventKind, Hub, HubConfig, UserId};
use bytes::Bytes;
use serde_json::Value;

pub fn hub(shards: usize) -> Hub {
    let mut cfg = HubConfig::default();
    cfg.shards = shards;
    Hub::start(cfg).expect("hub starts")
}

pub fn user(s: &str) -> UserId {
    UserId::new(s).expect("valid user id")
}

pub fn event(kind: EventKind, run: &str, data: &str) -> Event {
    Event::new(
        kind,
        run,
        Data::from_json(data.to_owned()).expect("valid json"),
    )
}

/// Every frame queued to `conn` right now, parsed.
pub fn drain(conn: &mut Connection) -> Vec<Value> {
    let mut out: Vec<Bytes> = Vec::new();
    loop {
        let before = out.len();
        conn.drain_into(&mut out, 1024);
        if out.len() == before {
            // A refill may be in flight: give the worker a moment, then stop when still empty.
            std::thread::sleep(Duration::from_millis(2));
            conn.drain_into(&mut out, 1024);
            if out.len() == before {
                break;
            }
        }
    }
    out.iter()
        .map(|b| serde_json::from_slice(payload_of(b)).expect("frame payload is JSON"))
        .collect()
}

/// Drains until `n` frames arrived or `timeout` passed.
pub fn drain_n(conn: &mut Connection, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut out: Vec<Bytes> = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if conn.drain_into(&mut out, 1024) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    out.iter()
        .map(|b| serde_json::from_slice(payload_of(b)).expect("frame payload is JSON"))
        .collect()
}

pub fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter_map(|f| f["seq"].as_u64()).collect()
}

/// Publishes `kind` for `run` with `data` to `u` and returns the one event `conn` received.
pub fn publish_one(
    hub: &Hub,
    conn: &mut Connection,
    u: &UserId,
    kind: EventKind,
    run: &str,
    data: &str,
) -> Value {
    hub.publish(
        agentcast_engine::Target::User(u.clone()),
        event(kind, run, data),
    )
    .unwrap()
    .wait()
    .unwrap();
    let mut got = drain(conn);
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}
