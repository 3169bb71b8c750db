//! Connection register/unregister churn: connect one connection (awaiting its welcome) and
//! drop it, on a hub already holding 10,000 connections.

use std::time::{Duration, Instant};

use agentcast_benches::{connect, hub};
use agentcast_engine::{ConnectOptions, UserId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn churn(c: &mut Criterion) {
    let hub = hub(None);
    let _resident = connect(&hub, 10_000, 1);
    let users: Vec<UserId> = (0..1_000)
        .map(|u| UserId::new(&format!("churn{u}")).expect("id"))
        .collect();
    let mut g = c.benchmark_group("churn");
    g.sample_size(30).measurement_time(Duration::from_secs(5));
    const BATCH: usize = 1_000;
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("register_unregister_1000_pipelined", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let pending: Vec<_> = users
                    .iter()
                    .map(|u| hub.connect(u.clone(), ConnectOptions::default()))
                    .collect();
                for p in pending {
                    drop(p.wait().expect("running"));
                }
            }
            hub.sync_blocking(false).expect("running");
            start.elapsed()
        })
    });
    g.finish();
    let s = hub.stats().total;
    println!(
        "churn: {} connects, {} disconnects, {} live",
        s.connects, s.disconnects, s.connections
    );
}

criterion_group!(benches, churn);
criterion_main!(benches);
