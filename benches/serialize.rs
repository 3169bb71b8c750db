//! Serializing one agent event of each type (~256-byte data) into its complete WebSocket
//! frame: the once-per-publish cost.

use std::hint::black_box;

use agentcast_benches::data;
use agentcast_engine::frame::{EventFields, Origin, encode_event};
use agentcast_engine::{EventKind, Priority};
use criterion::{Criterion, criterion_group, criterion_main};

fn serialize(c: &mut Criterion) {
    let d = data(256);
    let mut g = c.benchmark_group("serialize");
    for kind in EventKind::AGENT {
        g.bench_function(kind.as_str(), |b| {
            b.iter(|| {
                black_box(encode_event(&EventFields {
                    kind: black_box(&kind),
                    origin: Origin::User {
                        seq: 1_732_460_000_000_001,
                    },
                    run_id: Some("run-7f3a9c"),
                    ts_ms: 1_795_000_000_123,
                    priority: Priority::Normal,
                    data: d.as_bytes(),
                    extra: None,
                }))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, serialize);
criterion_main!(benches);
