//! The transport is never left asleep with frames queued.
//!
//! The worker skips waking a transport that has not armed itself, and pays one fence per
//! batch of recipients (see `ConnShared::notify`). A mistake there shows up as a transport
//! that waits forever with a frame in its queue. These tests play ping-pong: one event at a
//! time, the next published only once the transport has received the previous one, so every
//! round races the transport going to sleep against the worker's push. The transport waits
//! on [`Connection::ready`] with no timeout; a lost wake-up stalls the round and fails the test.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agentcast_engine::{ConnectOptions, Connection, Hub, HubConfig, Readiness, Target};
use common::{event, user};

const ROUNDS: u64 = 20_000;
const ROUND_DEADLINE: Duration = Duration::from_secs(5);

/// Waits on `ready()` (no timeout) and counts drained frames until `total` arrived.
fn spawn_transport(
    mut conn: Connection,
    received: Arc<AtomicU64>,
    total: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut batch = Vec::new();
            while received.load(Ordering::Relaxed) < total {
                match conn.ready().await {
                    Readiness::Frames => {}
                    Readiness::Closed(code) => panic!("closed with {code}"),
                }
                batch.clear();
                let n = conn.drain_into(&mut batch, 64) as u64;
                received.fetch_add(n, Ordering::Release);
            }
        })
    })
}

/// Publishes `ROUNDS` events with `publish`, each after the previous one arrived.
fn ping_pong(hub: &Hub, received: &AtomicU64, publish: impl Fn(&Hub, u64)) {
    for i in 0..ROUNDS {
        publish(hub, i);
        let deadline = Instant::now() + ROUND_DEADLINE;
        while received.load(Ordering::Acquire) <= i {
            assert!(
                Instant::now() < deadline,
                "round {i}: the transport never woke for a queued frame (lost wake-up)"
            );
            std::hint::spin_loop();
        }
    }
}

#[test]
fn per_user_deliveries_always_wake_the_transport() {
    let hub = Hub::start(HubConfig::default()).unwrap();
    let u = user("pingpong");
    let conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let transport = spawn_transport(conn, Arc::clone(&received), ROUNDS);
    ping_pong(&hub, &received, |hub, i| {
        hub.send(
            Target::User(u.clone()),
            event(
                agentcast_engine::EventKind::ToolExecuting,
                "r",
                &format!("{{\"i\":{i}}}"),
            ),
        )
        .unwrap();
    });
    transport.join().unwrap();
    assert_eq!(received.load(Ordering::Relaxed), ROUNDS);
}

#[test]
fn broadcasts_always_wake_every_transport() {
    // Enough connections per shard that the fan-out loop notifies in several batches (one
    // fence per batch); two of them are watched.
    let hub = Hub::start(HubConfig::default()).unwrap();
    let mut idle = Vec::new();
    for n in 0..200 {
        idle.push(
            hub.connect(user(&format!("idle{n}")), ConnectOptions::default())
                .wait()
                .unwrap(),
        );
    }
    let mut watched = Vec::new();
    for n in 0..2 {
        let conn = hub
            .connect(user(&format!("watched{n}")), ConnectOptions::default())
            .wait()
            .unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let t = spawn_transport(conn, Arc::clone(&received), ROUNDS / 4);
        watched.push((received, t));
    }
    for i in 0..ROUNDS / 4 {
        hub.send(
            Target::Broadcast,
            event(agentcast_engine::EventKind::ToolCompleted, "r", "{}"),
        )
        .unwrap();
        let deadline = Instant::now() + ROUND_DEADLINE;
        for (received, _) in &watched {
            while received.load(Ordering::Acquire) <= i {
                assert!(
                    Instant::now() < deadline,
                    "broadcast {i}: a transport never woke for a queued frame (lost wake-up)"
                );
                std::hint::spin_loop();
            }
        }
        // Keep the unwatched queues from filling up (their frames are not checked).
        if i % 16 == 15 {
            let mut sink = Vec::new();
            for c in &mut idle {
                sink.clear();
                c.drain_into(&mut sink, 64);
            }
        }
    }
    for (received, t) in watched {
        t.join().unwrap();
        assert_eq!(received.load(Ordering::Relaxed), ROUNDS / 4);
    }
}
