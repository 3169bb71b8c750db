//! Stress of the cross-thread hand-off: publishers and a draining transport on other threads.
//! Frames arrive in seq order, none twice, and every frame is accounted for: received,
//! dropped or coalesced.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentcast_engine::frame::payload_of;
use agentcast_engine::{ConnectOptions, Hub, HubConfig, Priority, Readiness};
use bytes::Bytes;
use common::*;

fn seq_of(frame: &Bytes) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(payload_of(frame)).unwrap();
    v["seq"].as_u64().unwrap()
}

/// Drains on a separate thread until `stop` and the queue is empty; returns seqs in order.
fn spawn_consumer(
    mut conn: agentcast_engine::Connection,
    stop: Arc<AtomicBool>,
    slow: bool,
) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut out = Vec::new();
            let mut batch = Vec::new();
            let mut idle_rounds = 0;
            loop {
                let ready = tokio::time::timeout(Duration::from_millis(20), conn.ready()).await;
                if let Ok(Readiness::Closed(code)) = ready {
                    panic!("closed with {code}");
                }
                batch.clear();
                let n = conn.drain_into(&mut batch, 16);
                out.extend(batch.iter().map(seq_of));
                if slow && n > 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                if n == 0 && stop.load(Ordering::Acquire) {
                    idle_rounds += 1;
                    if idle_rounds > 5 {
                        return out;
                    }
                } else {
                    idle_rounds = 0;
                }
            }
        })
    })
}

#[test]
fn concurrent_publishers_and_drainer_lose_nothing_with_room() {
    let mut cfg = HubConfig::default();
    cfg.shards = 2;
    cfg.ring_capacity = 1 << 20;
    cfg.write_batch = 8;
    let hub = Hub::start(cfg).unwrap();
    let u = user("stress");
    let conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = spawn_consumer(conn, stop.clone(), false);
    let publishers: Vec<_> = (0..3)
        .map(|_| {
            let hub = hub.clone();
            let u = u.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    hub.send(
                        agentcast_engine::Target::User(u.clone()),
                        event(agentcast_engine::EventKind::ToolExecuting, "r", "{}"),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    hub.sync_blocking(false).unwrap();
    stop.store(true, Ordering::Release);
    let got = consumer.join().unwrap();
    assert_eq!(got.len(), 60_000);
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "seqs arrive in order, contiguous"
    );
    let s = hub.stats();
    assert_eq!(s.total.delivered, 60_000);
    assert_eq!(s.queue_depth(), 0);
}

#[test]
fn slow_drainer_accounts_for_every_frame() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.ring_capacity = 64;
    cfg.write_batch = 4;
    let hub = Hub::start(cfg).unwrap();
    let u = user("slow");
    let conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = spawn_consumer(conn, stop.clone(), true);
    let run = hub.emitter(u.clone(), "r");
    let total = 20_000u64;
    let start = Instant::now();
    for i in 0..total {
        // Mostly thinking (coalescable) with some tool events (normal).
        let r = if i % 5 == 0 {
            run.tool_executing(Default::default())
        } else {
            run.agent_thinking(Default::default())
        };
        drop(r.unwrap());
    }
    hub.sync_blocking(false).unwrap();
    stop.store(true, Ordering::Release);
    let got = consumer.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(
        got.windows(2).all(|w| w[1] > w[0]),
        "FIFO: seqs strictly increase"
    );
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        got.len(),
        "no duplicates"
    );
    let s = hub.stats();
    let lost: u64 = s.total.dropped.iter().sum::<u64>() + s.total.coalesced.iter().sum::<u64>();
    assert_eq!(
        got.len() as u64 + lost,
        total,
        "received + dropped + coalesced == published; {:?}",
        s.total
    );
    assert!(lost > 0, "the slow drainer made the ring overflow");
    assert_eq!(s.dropped(Priority::Critical), 0);
}

#[test]
fn critical_overflow_closes_the_connection_with_1013() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.ring_capacity = 4;
    cfg.write_batch = 2;
    let hub = Hub::start(cfg).unwrap();
    let u = user("stuck");
    let conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let run = hub.emitter(u, "r");
    for _ in 0..7 {
        run.agent_started(Default::default())
            .unwrap()
            .wait()
            .unwrap();
    }
    assert_eq!(
        conn.close_code(),
        Some(agentcast_engine::conn::close_code::TRY_AGAIN_LATER)
    );
    hub.sync_blocking(false).unwrap();
    let s = hub.stats().total;
    assert_eq!(s.forced_closes, 1);
    assert_eq!(s.connections, 0);
    assert_eq!(s.dropped, [0, 0, 0], "nothing dropped silently");
}
