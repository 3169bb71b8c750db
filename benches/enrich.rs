//! The cost of run tracking and enrichment per publish: the same realistic run mix published
//! with enrichment on (the default) and off, measured two ways.
//!
//! `enrich/once_per_publish/*` (the precise figure): on one thread, the work a shard does per
//! user event — `encode_event` alone (`plain`) versus [`Enricher::meta`] then `encode_event`
//! with the `meta` member (`enriched`). `Enricher` is the very code the shard runs. Each
//! sample's events (fresh run ids, shared data) are built before its timer starts.
//!
//! `enrich/run_mix_1000_publishes_*` (end to end, noisier): through a one-shard hub.
//!
//! Mix per run (5 user events, data ~100–250 bytes): `agent_started` (with `expected_ms`),
//! `agent_thinking` (step i of n), `tool_executing` (a catalog tool), `tool_completed`,
//! `agent_completed`; runs rotate over 1,000 connected users on one shard.
//!
//! Timed: 1,000 publishes without receipt (`Hub::send`), then one sync of the shard — the
//! engine-side cost per publish (criterion's "thrpt" line is publishes/s; time / 1,000 is
//! the per-publish figure). Untimed: building the events (fresh run ids each iteration, so no
//! run is ever flagged) and draining every connection. The mock transport costs nothing while
//! timed. The difference between `enriched` and `plain` is what enrichment adds per publish.

use std::time::{Duration, Instant};

use agentcast_benches::{connect, drain_all};
use std::hint::black_box;

use agentcast_engine::frame::{EventFields, Origin, encode_event};
use agentcast_engine::{
    Data, Enricher, EnrichmentConfig, Event, EventKind, Hub, HubConfig, Priority, Target, UserId,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const USERS: usize = 1_000;
const BATCH: usize = 1_000;

/// The five events' data (~100–150 bytes each), built once and shared by every run.
fn mix_data() -> [(EventKind, Data); 5] {
    let filler = "x".repeat(80);
    let d = |json: String| Data::from_json(json).expect("valid json");
    [
        (
            EventKind::AgentStarted,
            d(format!(
                r#"{{"agent":"planner","expected_ms":30000,"note":"{filler}"}}"#
            )),
        ),
        (
            EventKind::AgentThinking,
            d(format!(
                r#"{{"message":"Comparing options","step":3,"total_steps":7,"note":"{filler}"}}"#
            )),
        ),
        (
            EventKind::ToolExecuting,
            d(format!(
                r#"{{"tool":"web_search","input":{{"q":"flights to Lisbon"}},"note":"{filler}"}}"#
            )),
        ),
        (
            EventKind::ToolCompleted,
            d(format!(
                r#"{{"tool":"web_search","output":{{"hits":12}},"note":"{filler}"}}"#
            )),
        ),
        (
            EventKind::AgentCompleted,
            d(format!(
                r#"{{"result":{{"summary":"done"}},"note":"{filler}"}}"#
            )),
        ),
    ]
}

/// `runs` runs of five events each, run ids from `first_run`, rotating over `users`.
fn mix(
    first_run: usize,
    runs: usize,
    users: &[UserId],
    data: &[(EventKind, Data); 5],
) -> Vec<(UserId, Event)> {
    let mut out = Vec::with_capacity(runs * 5);
    for n in first_run..first_run + runs {
        let run: std::sync::Arc<str> = format!("run-{n}").into();
        let user = &users[n % users.len()];
        for (kind, d) in data {
            out.push((
                user.clone(),
                Event::new(kind.clone(), run.clone(), d.clone()),
            ));
        }
    }
    out
}

fn bench_mode(c: &mut Criterion, name: &str, enabled: bool) {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.enrichment.enabled = enabled;
    let hub = Hub::start(cfg).expect("hub starts");
    let mut conns = connect(&hub, USERS, 1);
    let users: Vec<UserId> = (0..USERS)
        .map(|u| UserId::new(&format!("u{u}")).expect("id"))
        .collect();
    let data = mix_data();
    let mut scratch = Vec::with_capacity(64);
    let mut next_run = 0usize;
    let mut g = c.benchmark_group("enrich");
    g.sample_size(50).measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch = mix(next_run, BATCH / 5, &users, &data);
                next_run += BATCH / 5;
                let start = Instant::now();
                for (user, event) in batch {
                    hub.send(Target::User(user), event).expect("running");
                }
                hub.sync_blocking(false).expect("running");
                total += start.elapsed();
                drain_all(&mut conns, &mut scratch);
            }
            total
        })
    });
    g.finish();
    drop(conns);
    hub.shutdown();
}

fn once_per_publish(c: &mut Criterion) {
    let users: Vec<UserId> = (0..USERS)
        .map(|u| UserId::new(&format!("u{u}")).expect("id"))
        .collect();
    let data = mix_data();
    let mut g = c.benchmark_group("enrich/once_per_publish");
    g.sample_size(100).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(1));
    for enabled in [false, true] {
        let mut enricher = Enricher::new(&EnrichmentConfig::default());
        let mut next_run = 0usize;
        let mut ts_ms = 1_795_000_000_000u64;
        let name = if enabled { "enriched" } else { "plain" };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Untimed: the events of this sample (fresh run ids).
                let runs = (iters as usize).div_ceil(5);
                let events = mix(next_run, runs, &users, &data);
                next_run += runs;
                let start = Instant::now();
                for (user, event) in events.iter().take(iters as usize) {
                    ts_ms += 1;
                    if enabled && ts_ms % 1_000 == 0 {
                        // The shard's housekeeping tick, amortized in (the shard runs it
                        // every 50 ms, i.e. far more rarely at these rates).
                        enricher.expire(ts_ms);
                    }
                    let meta = if enabled {
                        enricher.meta(user, event, ts_ms)
                    } else {
                        None
                    };
                    black_box(encode_event(&EventFields {
                        kind: &event.kind,
                        origin: Origin::User { seq: ts_ms },
                        run_id: event.run_id.as_deref(),
                        ts_ms,
                        priority: Priority::Normal,
                        data: event.data.as_bytes(),
                        extra: meta,
                    }));
                }
                let elapsed = start.elapsed();
                drop(events);
                elapsed
            })
        });
    }
    g.finish();
}

fn enrich(c: &mut Criterion) {
    once_per_publish(c);
    bench_mode(c, "run_mix_1000_publishes_plain", false);
    bench_mode(c, "run_mix_1000_publishes_enriched", true);
}

criterion_group!(benches, enrich);
criterion_main!(benches);
