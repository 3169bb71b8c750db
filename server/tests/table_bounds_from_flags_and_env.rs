//! The table bounds reach the engine from the real binary's flags and environment, flags
//! winning: `--max-users` / `AGENTCAST_MAX_USERS`, `--history-len` / `AGENTCAST_HISTORY_LEN`.

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, BinaryServer, SECRET, TestServer, token};
use serde_json::{Value, json};

fn spawn(args: &[&str], envs: &[(&str, &str)]) -> BinaryServer {
    let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut env = vec![
        ("AGENTCAST_JWT_SECRET", SECRET),
        ("AGENTCAST_API_KEY", API_KEY),
    ];
    env.extend_from_slice(envs);
    BinaryServer::spawn(Path::new(env!("CARGO_BIN_EXE_agentcast")), &all, &env)
}

async fn publish_batch(api: &TestServer, users: impl Iterator<Item = String>) -> Vec<u64> {
    let items: Vec<Value> = users
        .map(|u| json!({"user_id": u, "type": "tool_executing", "run_id": "r", "data": {}}))
        .collect();
    let v = api.publish_batch(&items).await;
    v.iter().map(|r| r["seq"].as_u64().expect("seq")).collect()
}

/// The engine's user gauge once the evictions are published (gauges follow command batches).
async fn users_after_evictions(api: &TestServer, evicted: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = api.http("GET", "/api/v1/stats", None, b"").await;
        let v: Value = serde_json::from_str(&text).unwrap();
        let e = &v["engine"];
        let done = e["users_evicted_over_limit"].as_u64() >= Some(evicted);
        if done || tokio::time::Instant::now() > deadline {
            return e["users"].as_u64().unwrap_or_else(|| panic!("{v}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_users_flag_wins_over_env_and_env_applies_alone() {
    let flagged = spawn(&["--max-users", "10"], &[("AGENTCAST_MAX_USERS", "1000")]);
    publish_batch(&flagged.api(), (0..100).map(|i| format!("f{i}"))).await;
    let users = users_after_evictions(&flagged.api(), 90).await;
    assert!(users <= 10, "--max-users 10 holds {users} users");

    let env_only = spawn(&[], &[("AGENTCAST_MAX_USERS", "30")]);
    publish_batch(&env_only.api(), (0..100).map(|i| format!("e{i}"))).await;
    let users = users_after_evictions(&env_only.api(), 70).await;
    assert!(
        users <= 30 && users > 10,
        "AGENTCAST_MAX_USERS=30 holds {users} users"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_len_flag_sets_what_a_never_seen_user_keeps() {
    let server = spawn(&["--history-len", "5"], &[("AGENTCAST_HISTORY_LEN", "50")]);
    let api = server.api();
    let seqs = publish_batch(&api, (0..20).map(|_| "unknown-tier".to_owned())).await;
    let mut c = api.connect(&token("unknown-tier")).await;
    // The gap and the 5 kept events, read by count (a pong can overtake a replay).
    let got = c.take(6).await;
    assert!(c.sync().await.is_empty());
    assert_eq!(got[0]["type"], "gap", "{got:?}");
    assert_eq!(got[0]["to"], seqs[14]);
    let kept: Vec<u64> = got[1..]
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, seqs[15..]);
}
