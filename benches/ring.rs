//! Priority ring push/pop: the fast path (room) and the overflow path (full ring of 256
//! evicting a low frame).

use std::hint::black_box;
use std::sync::Arc;

use agentcast_engine::Priority;
use agentcast_engine::ring::{PriorityRing, Queued};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

fn ring(c: &mut Criterion) {
    let frame = Bytes::from(vec![b'x'; 512]);
    let run: Arc<str> = Arc::from("run-1");
    let mut g = c.benchmark_group("ring");
    g.bench_function("push_pop_with_room", |b| {
        let mut r = PriorityRing::new(256);
        b.iter(|| {
            r.push(Queued::new(frame.clone(), Priority::Normal));
            black_box(r.pop())
        })
    });
    g.bench_function("push_full_256_coalesce_thinking", |b| {
        let mut r = PriorityRing::new(256);
        for i in 0..256 {
            let p = if i % 2 == 0 {
                Priority::Low
            } else {
                Priority::Normal
            };
            r.push(
                Queued::new(frame.clone(), p).coalescing((p == Priority::Low).then(|| run.clone())),
            );
        }
        b.iter(|| {
            black_box(
                r.push(Queued::new(frame.clone(), Priority::Low).coalescing(Some(run.clone()))),
            )
        })
    });
    g.bench_function("push_full_256_evict_low_for_critical", |b| {
        let mut r = PriorityRing::new(256);
        for _ in 0..256 {
            r.push(Queued::new(frame.clone(), Priority::Low));
        }
        b.iter(|| {
            black_box(r.push(Queued::new(frame.clone(), Priority::Normal)));
            // Put a low frame back so every iteration evicts one.
            r.pop();
            r.push(Queued::new(frame.clone(), Priority::Low));
        })
    });
    g.finish();
}

criterion_group!(benches, ring);
criterion_main!(benches);
