//! Fan-out of one ~512-byte event to 100,000 registered connections over all shards, and a
//! per-user publish to one user (2 devices) among 100,000 connections.
//!
//! Timed: from `publish` until every shard has queued the frame to every recipient (the
//! receipt). Per-recipient cost = time / recipients (criterion's "thrpt" line in elements/s).
//! The per-user bench also reports pipelined throughput: 1,000 publishes to random users with
//! no receipt, then one sync of all shards — the engine-side cost per publish.

use std::hint::black_box;
use std::time::{Duration, Instant};

use agentcast_benches::{connect, data, drain_all, fill_histories, hub, hub_with};
use agentcast_engine::{Event, EventKind, Target, UserId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CONNS: usize = 100_000;

fn fanout(c: &mut Criterion) {
    let hub = hub(None);
    let mut conns = connect(&hub, CONNS, 1);
    let ev = Event::new(EventKind::ToolCompleted, "run-1", data(512));
    let mut scratch = Vec::with_capacity(64);
    let mut g = c.benchmark_group("fanout");
    g.sample_size(30).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(CONNS as u64));
    g.bench_function("broadcast_512B_to_100k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let r = hub
                    .publish(Target::Broadcast, ev.clone())
                    .expect("running")
                    .wait()
                    .expect("running");
                total += start.elapsed();
                assert_eq!(r.connections, CONNS);
                drain_all(&mut conns, &mut scratch);
            }
            total
        })
    });
    g.finish();
    drop(conns);
    hub.shutdown();
}

/// Events kept per user in the per-user bench (see [`per_user`]).
const HISTORY: usize = 16;

/// Per-user publishes in the steady state of a long-running node: every user's history is
/// already full, so each publish records its event and evicts the oldest. (With empty
/// histories, every publish would also take fresh memory from the kernel for the history
/// and the retained frame; that growth stops once histories are full, and measured it is
/// about 40% of the shard's time: page faults and zeroing.) The history length does not
/// change the per-publish work once full (push one, drop one); it only bounds the memory the
/// prefill needs.
fn per_user(c: &mut Criterion) {
    let hub = hub_with(None, |cfg| cfg.history_len = HISTORY);
    let mut conns = connect(&hub, CONNS / 2, 2);
    let users: Vec<UserId> = (0..CONNS / 2)
        .map(|u| UserId::new(&format!("u{u}")).expect("id"))
        .collect();
    let ev = Event::new(EventKind::ToolExecuting, "run-1", data(512));
    let mut scratch = Vec::with_capacity(64);
    fill_histories(&hub, &users, &ev, HISTORY, &mut conns, &mut scratch);
    let mut g = c.benchmark_group("per_user");
    g.sample_size(50).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(1));
    let mut next = 0usize;
    g.bench_function("publish_one_user_2_devices_among_100k_with_receipt", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                next = (next + 7919) % users.len();
                let start = Instant::now();
                let r = hub
                    .publish(Target::User(users[next].clone()), ev.clone())
                    .expect("running")
                    .wait()
                    .expect("running");
                total += start.elapsed();
                black_box(r);
            }
            drain_all(&mut conns, &mut scratch);
            total
        })
    });
    const PIPELINE: u64 = 1_000;
    g.throughput(Throughput::Elements(PIPELINE));
    g.bench_function(
        "publish_1000_pipelined_one_user_2_devices_among_100k",
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    for _ in 0..PIPELINE {
                        next = (next + 7919) % users.len();
                        hub.send(Target::User(users[next].clone()), ev.clone())
                            .expect("running");
                    }
                    hub.sync_blocking(false).expect("running");
                    total += start.elapsed();
                    drain_all(&mut conns, &mut scratch);
                }
                total
            })
        },
    );
    g.finish();
    let s = hub.stats().total;
    println!(
        "per_user: delivered {} frames, dropped {:?}",
        s.delivered, s.dropped
    );
    drop(conns);
    hub.shutdown();
}

criterion_group!(benches, fanout, per_user);
criterion_main!(benches);
