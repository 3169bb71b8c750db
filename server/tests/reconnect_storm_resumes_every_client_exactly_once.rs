//! A reconnect storm, scaled down to run in CI: Redis and three nodes on one port
//! (`--reuse-port`), 3,060 WebSocket connections (1,480 users × 2 devices, 20 users × 5, the
//! free tier's `connections_per_user`) through that port,
//! a publisher sending per-user events to the same port for the whole test, and the node
//! holding the most connections killed with SIGKILL mid-load. Every device whose connection
//! died reconnects to the same port (the kernel hands it to a survivor) with jittered
//! exponential backoff and `?last_seq=`, and must end with every accepted event of its user
//! exactly once, in seq order: no loss, no duplicate, no `gap`, no other user's event.
//!
//! Printed (`--nocapture`): connections per node before the kill, the time from the kill to
//! the last device resumed, reconnect attempts, and the 503/429 refusals met on the way.
//!
//! Set `STORM_WITHOUT_LAST_SEQ=1` to make reconnections omit `last_seq`: the test then fails
//! (the nodes replay from the ack cursor, and the devices get duplicates), which shows it
//! checks the resume.

mod storm;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use agentcast_tests::{API_KEY, BinaryServer, RedisServer, SECRET};
use storm::{Accepted, Device, Storm, publish_until, run_device, sockets_of};
use tokio::sync::{Semaphore, watch};

const USERS: usize = 1_500;
const DEVICES_PER_USER: usize = 2;
/// Users 0..FULL_USERS hold the free tier's `connections_per_user` (5) devices instead: their
/// devices on the killed node are refused with 429 until its lease lapses (≤ 10 s), since its
/// connections still count cluster-wide until then.
const FULL_USERS: usize = 20;
const FULL_DEVICES: usize = 5;
/// Devices opening their first connection at once.
const OPEN_CONCURRENCY: usize = 64;
/// Publishes per second, over the whole test.
const PUBLISH_PER_SEC: u32 = 300;
/// The liveness bound: from the kill to every device resumed and caught up.
const STORM_BOUND: Duration = Duration::from_secs(60);

fn node(bin: &Path, listen: &str, redis: &RedisServer, name: &str) -> BinaryServer {
    BinaryServer::spawn(
        bin,
        &[
            "serve",
            "--listen",
            listen,
            "--reuse-port",
            "--redis-url",
            &redis.url(),
            "--node-id",
            name,
        ],
        &[
            ("AGENTCAST_JWT_SECRET", SECRET),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    )
}

/// Waits (20 s at most) until `n` has logged that its Redis link is up.
fn wait_link_up(n: &BinaryServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !n.log().contains("redis link up") {
        assert!(Instant::now() < deadline, "link not up:\n{}", n.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `done` every 50 ms until it holds; panics with `what` after `limit`.
async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_clients_reconnect_and_resume_every_event_exactly_once() {
    let started = Instant::now();
    let bin = Path::new(env!("CARGO_BIN_EXE_agentcast"));
    let redis = RedisServer::start();
    let first = node(bin, "127.0.0.1:0", &redis, "storm-a");
    let listen = first.addr.to_string();
    let mut nodes = vec![
        first,
        node(bin, &listen, &redis, "storm-b"),
        node(bin, &listen, &redis, "storm-c"),
    ];
    for n in &nodes {
        wait_link_up(n);
    }
    let addr = nodes[0].addr;
    let base: Vec<usize> = nodes.iter().map(|n| sockets_of(n.pid())).collect();

    // The initial load: every device connected, at most OPEN_CONCURRENCY opening at once.
    let storm = Arc::new(Storm::default());
    storm.without_last_seq.store(
        std::env::var_os("STORM_WITHOUT_LAST_SEQ").is_some(),
        Relaxed,
    );
    let gate = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let (stop_devices, devices_stop) = watch::channel(false);
    let devices: Vec<Arc<Device>> = (0..USERS)
        .flat_map(|u| {
            let n = if u < FULL_USERS {
                FULL_DEVICES
            } else {
                DEVICES_PER_USER
            };
            (0..n).map(move |_| Device::new(u))
        })
        .collect();
    let tasks: Vec<_> = devices
        .iter()
        .map(|d| {
            tokio::spawn(run_device(
                addr,
                Arc::clone(d),
                Arc::clone(&storm),
                Arc::clone(&gate),
                devices_stop.clone(),
            ))
        })
        .collect();
    let total = devices.len() as u64;
    wait_for(Duration::from_secs(40), "every device connected", || {
        storm.connected.load(Relaxed) == total
    })
    .await;
    let opened_in = started.elapsed();

    // The publisher runs from here to the end.
    let accepted = Arc::new(Accepted::default());
    let (stop_publisher, publisher_stop) = watch::channel(false);
    let publisher = tokio::spawn(publish_until(
        addr,
        USERS,
        PUBLISH_PER_SEC,
        4,
        Arc::clone(&accepted),
        publisher_stop,
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Kill the node holding the most connections.
    let per_node: Vec<usize> = nodes
        .iter()
        .zip(&base)
        .map(|(n, b)| sockets_of(n.pid()).saturating_sub(*b))
        .collect();
    let victim = (0..nodes.len()).max_by_key(|&i| per_node[i]).unwrap();
    let events_before_kill = accepted.events.load(Relaxed);
    nodes[victim].kill();
    let killed_at = Instant::now();

    // Every device whose connection died comes back (to a survivor, on the same port).
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_for(STORM_BOUND, "every dropped device resumed", || {
        storm.connected.load(Relaxed) == total
    })
    .await;
    let dropped: Vec<&Arc<Device>> = devices
        .iter()
        .filter(|d| d.drops.load(Relaxed) > 0)
        .collect();
    let last_resume = |full: bool| {
        dropped
            .iter()
            .filter(|d| (d.user < FULL_USERS) == full)
            .filter_map(|d| *d.resumed_at.lock().unwrap())
            .max()
            .map(|t| t - killed_at)
    };
    let (last_resume, last_full_resume) = (last_resume(false), last_resume(true));
    let attempts = storm.reconnect_attempts.load(Relaxed);

    // Load after the storm, then everything published must arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_publisher.send(true).unwrap();
    publisher.await.expect("publisher");
    let expected = std::mem::take(&mut *accepted.by_user.lock().unwrap());
    wait_for(
        STORM_BOUND.saturating_sub(killed_at.elapsed()),
        "every device caught up with its user's last accepted event",
        || {
            devices.iter().all(|d| {
                let top = expected
                    .get(&d.user)
                    .and_then(|s| s.iter().max())
                    .copied()
                    .unwrap_or(0);
                d.last.load(Relaxed) >= top
            })
        },
    )
    .await;
    let caught_up = killed_at.elapsed();
    stop_devices.send(true).unwrap();
    for t in tasks {
        t.await.expect("device task");
    }

    eprintln!(
        "reconnect storm: {total} connections opened in {opened_in:?} (at most \
         {OPEN_CONCURRENCY} at once); per node before the kill {per_node:?}, killed node \
         {victim} ({} connections); {} devices dropped; kill to last resumed {last_resume:?} (devices of users at their \
         connection limit: {last_full_resume:?}); kill to all caught up {caught_up:?}; reconnect attempts {attempts}; refusals 503 {}, \
         429 {}, other {}; connect errors {}; events accepted {} ({events_before_kill} before \
         the kill), publish attempts retried {}; test {:?}",
        per_node[victim],
        dropped.len(),
        storm.refused_503.load(Relaxed),
        storm.refused_429.load(Relaxed),
        storm.refused_other.load(Relaxed),
        storm.connect_errors.load(Relaxed),
        accepted.events.load(Relaxed),
        accepted.retried.load(Relaxed),
        started.elapsed(),
    );

    assert!(!dropped.is_empty(), "the kill dropped connections");
    assert!(
        dropped
            .iter()
            .all(|d| d.resumed_at.lock().unwrap().is_some()),
        "every dropped device reconnected"
    );
    assert!(
        storm.refused_429.load(Relaxed) > 0,
        "a user at its limit is refused while the dead node's connections still count"
    );
    let mut failures = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let mut want = expected.get(&d.user).cloned().unwrap_or_default();
        want.sort_unstable();
        let got = d.got.lock().unwrap();
        let problems = d.problems.lock().unwrap();
        if *got != want || !problems.is_empty() {
            let missing = want.iter().filter(|s| !got.contains(s)).count();
            failures.push(format!(
                "device {i} (user {}, dropped {}×): {} received, {} accepted, {missing} \
                 missing; problems {:?}",
                d.user,
                d.drops.load(Relaxed),
                got.len(),
                want.len(),
                &problems[..problems.len().min(3)],
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} devices did not get their user's events exactly once, in order:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
}
