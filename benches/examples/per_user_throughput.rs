//! Engine-side cost of per-user publishes, round by round: the criterion bench
//! `per_user/publish_1000_pipelined…` without criterion, so each round's figure is visible.
//! One thread publishes N events (default 1,000) to random users (2 connections each, 100,000
//! connections, every history already full), then waits until every shard has handled them;
//! the queues are drained between rounds. Prints, per round, the publisher's own cost per
//! publish and the time per publish until all shards were done.
//!
//! ```sh
//! cargo run --release -p agentcast-benches --example per_user_throughput [-- N [ROUNDS]]
//! AGENTCAST_BENCH_SHARDS=1 cargo run --release -p agentcast-benches --example per_user_throughput
//! ```

use std::time::Instant;

use agentcast_benches::{connect, data, drain_all, fill_histories, hub_with};
use agentcast_engine::{Event, EventKind, Target, UserId};

const USERS: usize = 50_000;
const HISTORY: usize = 16;

fn main() {
    let per_round: usize = std::env::args().nth(1).map_or(1_000, |s| {
        s.parse().expect("a number of publishes per round")
    });
    let rounds: usize = std::env::args()
        .nth(2)
        .map_or(8, |s| s.parse().expect("a number of rounds"));
    let hub = hub_with(None, |c| c.history_len = HISTORY);
    let mut conns = connect(&hub, USERS, 2);
    let users: Vec<UserId> = (0..USERS)
        .map(|u| UserId::new(&format!("u{u}")).expect("valid id"))
        .collect();
    let ev = Event::new(EventKind::ToolExecuting, "run-1", data(512));
    let mut scratch = Vec::new();
    fill_histories(&hub, &users, &ev, HISTORY, &mut conns, &mut scratch);
    let mut next = 0usize;
    for round in 0..rounds {
        let start = Instant::now();
        for _ in 0..per_round {
            next = (next + 7919) % users.len();
            hub.send(Target::User(users[next].clone()), ev.clone())
                .expect("running");
        }
        let sent = start.elapsed();
        hub.sync_blocking(false).expect("running");
        let done = start.elapsed();
        let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / per_round as f64;
        println!(
            "round {round}: publisher {:.2} µs/publish, until every shard was done {:.2} µs/publish",
            per(sent),
            per(done)
        );
        drain_all(&mut conns, &mut scratch);
    }
    hub.shutdown();
}
