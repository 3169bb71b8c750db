//! `Hub::begin_shutdown` loses nothing a receipt counted: every frame queued to a connection,
//! in its priority ring as well as its hand-off queue, still reaches the transport, and only
//! then is the connection asked to close with 1001. What a shutdown does discard is counted in
//! `shutdown_unwritten`.

mod common;

use std::time::{Duration, Instant};

use agentcast_engine::{ConnectOptions, EventKind, PublishError, Target};
use bytes::Bytes;
use common::*;

/// More than the hand-off queue (32 by default) holds, fewer than ring + hand-off.
const QUEUED: usize = 200;

fn publish_many(hub: &agentcast_engine::Hub, u: &agentcast_engine::UserId, n: usize) {
    for i in 0..n {
        let receipt = hub
            .publish(
                Target::User(u.clone()),
                event(EventKind::ToolExecuting, "r", &format!("{{\"i\":{i}}}")),
            )
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(receipt.connections, 1);
    }
}

#[test]
fn begin_shutdown_hands_over_ring_and_handoff_then_closes_1001() {
    let hub = hub(1);
    let u = user("slow");
    let mut conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    publish_many(&hub, &u, QUEUED);
    assert!(
        hub.stats().total.backlog > 0,
        "the test must reach the ring: {:?}",
        hub.stats().total
    );

    hub.begin_shutdown();
    let late = hub
        .publish(
            Target::User(u.clone()),
            event(EventKind::ToolExecuting, "r", "{}"),
        )
        .and_then(|r| r.wait().map_err(PublishError::from));
    assert_eq!(
        late,
        Err(PublishError::Closed),
        "a publish after the shutdown began is refused"
    );

    // The transport: drain until the engine asks for the close, then take what is left.
    let mut frames: Vec<Bytes> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(code) = conn.close_code() {
            while conn.drain_into(&mut frames, 64) > 0 {}
            break code;
        }
        if conn.drain_into(&mut frames, 64) == 0 {
            assert!(
                Instant::now() < deadline,
                "no close after {} frames",
                frames.len()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    assert_eq!(code, 1001);
    assert_eq!(
        frames.len(),
        QUEUED,
        "every receipted frame before the close"
    );
    drop(conn);
    hub.shutdown();
    assert_eq!(hub.stats().total.shutdown_unwritten, 0);
}

#[test]
fn a_transport_dropped_while_draining_leaves_its_frames_counted() {
    let hub = hub(1);
    let u = user("gone");
    let conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    publish_many(&hub, &u, QUEUED);
    hub.begin_shutdown();
    drop(conn);
    hub.shutdown();
    assert_eq!(hub.stats().total.shutdown_unwritten, QUEUED as u64);
}

#[test]
fn shutdown_without_drain_counts_the_ring_it_discards() {
    let hub = hub(1);
    let u = user("abrupt");
    let conn = hub
        .connect(u.clone(), ConnectOptions::default())
        .wait()
        .unwrap();
    publish_many(&hub, &u, QUEUED);
    let handoff = hub.config().write_batch;
    hub.shutdown();
    // The hand-off queue stays with the transport (it writes it before the close); the ring
    // is discarded with the shard.
    assert_eq!(conn.close_code(), Some(1001));
    assert_eq!(
        hub.stats().total.shutdown_unwritten,
        (QUEUED - handoff) as u64
    );
}
