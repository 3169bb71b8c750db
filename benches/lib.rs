//! Shared set-up of agentcast's criterion benches.
//!
//! The benches drive the engine in-process: "connections" are engine
//! [`Connection`] handles with no socket behind them, so the figures are the engine's own cost
//! (publish → every recipient's hand-off queue holds the frame) without any network I/O. What
//! the mock transport costs: nothing during the timed part; between iterations the bench
//! drains every queue (untimed) so each iteration starts with empty rings.

use agentcast_engine::{ConnectOptions, Connection, Data, Hub, HubConfig, UserId};
use bytes::Bytes;

/// A hub with `shards` shards (the number of cores when `None`).
pub fn hub(shards: Option<usize>) -> Hub {
    let mut cfg = HubConfig::default();
    if let Some(s) = shards {
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
pub fn drain_all(conns: &[Connection], scratch: &mut Vec<Bytes>) {
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
