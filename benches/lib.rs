//! Shared set-up of agentcast's criterion benches.
//!
//! The benches drive the engine in-process: "connections" are engine
//! [`Connection`] handles with no socket behind them, so the figures are the engine's own cost
//! (publish → every recipient's hand-off queue holds the frame) without any network I/O. What
//! the mock transport costs: nothing during the timed part; between iterations the bench
//! drains every queue (untimed) so each iteration starts with empty rings.

/// The allocator the `agentcast` binary uses, so engine figures match the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use agentcast_engine::{ConnectOptions, Connection, Data, Event, Hub, HubConfig, Target, UserId};
use bytes::Bytes;

/// A hub with `shards` shards (when `None`: `AGENTCAST_BENCH_SHARDS`, else the number of
/// cores).
pub fn hub(shards: Option<usize>) -> Hub {
    hub_with(shards, |_| {})
}

/// Like [`hub`], with `tweak` applied to the configuration first.
pub fn hub_with(shards: Option<usize>, tweak: impl FnOnce(&mut HubConfig)) -> Hub {
    let mut cfg = HubConfig::default();
    tweak(&mut cfg);
    let from_env = std::env::var("AGENTCAST_BENCH_SHARDS")
        .ok()
        .and_then(|s| s.parse().ok());
    if let Some(s) = shards.or(from_env) {
        cfg.shards = s;
    }
    Hub::start(cfg).expect("hub starts")
}

/// Registers `users × devices` connections; user ids are `u{i}`.
pub fn connect(hub: &Hub, users: usize, devices: usize) -> Vec<Connection> {
    let pending: Vec<_> = (0..users)
        .flat_map(|u| {
            let id = UserId::new(&format!("u{u}")).expect("valid id");
            (0..devices).map(move |_| id.clone())
        })
        .map(|id| hub.connect(id, ConnectOptions::default()))
        .collect();
    pending
        .into_iter()
        .map(|c| c.wait().expect("hub running"))
        .collect()
}

/// Empties every connection's queue.
pub fn drain_all(conns: &mut [Connection], scratch: &mut Vec<Bytes>) {
    for c in conns {
        scratch.clear();
        c.drain_into(scratch, 64);
    }
}

/// A JSON data object of about `len` bytes.
pub fn data(len: usize) -> Data {
    let filler = "x".repeat(len.saturating_sub(40));
    Data::from_json(format!(r#"{{"step":3,"of":7,"note":"{filler}"}}"#)).expect("valid json")
}

/// Publishes `ev` to every user `rounds` times, syncing and draining after each round: with
/// `rounds` equal to the history length, every history is full afterwards (the steady state
/// of a long-running node, where each publish evicts the oldest event).
pub fn fill_histories(
    hub: &Hub,
    users: &[UserId],
    ev: &Event,
    rounds: usize,
    conns: &mut [Connection],
    scratch: &mut Vec<Bytes>,
) {
    for _ in 0..rounds {
        for u in users {
            hub.send(Target::User(u.clone()), ev.clone())
                .expect("running");
        }
        hub.sync_blocking(false).expect("running");
        drain_all(conns, scratch);
    }
}
