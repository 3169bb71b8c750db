//! Measures what publishes to distinct offline users cost a real `agentcast` process: its RSS
//! before and after, and the engine's user count and history gauges.
//!
//! ```text
//! cargo build -p agentcast-server --bin agentcast
//! cargo run -p agentcast-server --example offline_users_rss -- \
//!     target/debug/agentcast 150000 [extra serve flags, e.g. --max-users 50000]
//! ```
//!
//! Each user gets one small `tool_executing` event, published in batches of 1,000; with
//! `PAD=<bytes>` in the environment, each event carries that many more bytes (batches then
//! stay under the 1 MiB body limit). Linux only (reads `/proc/<pid>/status`).

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, BinaryServer, SECRET};
use serde_json::{Value, json};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bin = args
        .first()
        .map_or("target/debug/agentcast", String::as_str);
    let users: usize = args
        .get(1)
        .map_or(150_000, |n| n.parse().expect("user count"));
    let mut serve = vec!["serve", "--listen", "127.0.0.1:0"];
    serve.extend(args.iter().skip(2).map(String::as_str));
    let server = BinaryServer::spawn(
        Path::new(bin),
        &serve,
        &[
            ("AGENTCAST_JWT_SECRET", SECRET),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    );
    let api = server.api();
    let pad = "p".repeat(std::env::var("PAD").map_or(0, |p| p.parse().expect("PAD bytes")));
    let per_batch = (900_000 / (pad.len() + 100)).clamp(1, 1000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(server.pid());
    for start in (0..users).step_by(per_batch) {
        let batch: Vec<Value> = (start..(start + per_batch).min(users))
            .map(|i| {
                json!({"user_id": format!("offline-{i}"), "type": "tool_executing",
                       "run_id": "r", "data": {"i": i, "pad": pad}})
            })
            .collect();
        let (status, body) = api
            .http(
                "POST",
                "/api/v1/publish/batch",
                Some(API_KEY),
                Value::Array(batch).to_string().as_bytes(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(server.pid());
    let (_, stats) = api.http("GET", "/api/v1/stats", None, b"").await;
    let stats: Value = serde_json::from_str(&stats).expect("stats");
    let e = &stats["engine"];
    println!(
        "{users} offline users: RSS {before} KiB -> {after} KiB (+{} MiB, {} B/user); \
         engine users {}, evicted over limit {}, history events {}, history bytes {}",
        (after.saturating_sub(before)) / 1024,
        (after.saturating_sub(before)) * 1024 / users as u64,
        e["users"],
        e["users_evicted_over_limit"],
        e["history_events"],
        e["history_bytes"],
    );
}
