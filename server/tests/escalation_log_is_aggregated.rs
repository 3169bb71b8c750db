//! The real `agentcast` binary's log under an escalation flood: 2,000 critical events to
//! offline users with a short ack deadline write a handful of warn-level escalation lines
//! (one in full, then summaries with counts), no error line, and the node stays ready.

use std::path::Path;
use std::time::{Duration, Instant};

use agentcast_tests::{API_KEY, BinaryServer, SECRET};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_escalations_write_a_few_warn_lines_and_no_error() {
    let bin = Path::new(env!("CARGO_BIN_EXE_agentcast"));
    let dir = std::env::temp_dir().join(format!("agentcast-esc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("agentcast.toml");
    std::fs::write(
        &config,
        "[escalation]\nack_deadline_ms = 200\nlog_interval_ms = 1000\n",
    )
    .unwrap();
    let server = BinaryServer::spawn(
        bin,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        &[
            ("AGENTCAST_JWT_SECRET", SECRET),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    );
    let api = server.api();
    let started = Instant::now();
    for batch in 0..2 {
        let items: Vec<Value> = (0..1_000)
            .map(|i| {
                json!({"user_id": format!("offline-{}", i % 400), "type": "agent_error",
                       "run_id": format!("r{batch}-{i}"), "data": {}})
            })
            .collect();
        let (s, b) = api
            .http(
                "POST",
                "/api/v1/publish/batch",
                Some(API_KEY),
                Value::Array(items).to_string().as_bytes(),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    // Wait for every escalation, then one more interval for the last summary.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, m) = api.http("GET", "/metrics", None, b"").await;
        if m.contains("agentcast_escalations_total 2000") {
            break;
        }
        assert!(Instant::now() < deadline, "escalations: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let elapsed = started.elapsed();
    let log = server.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("agentcast::escalation"))
        .collect();
    let bound = 2 + elapsed.as_secs() as usize;
    assert!(
        (2..=bound).contains(&lines.len()),
        "{} escalation lines over {elapsed:?} (bound {bound}):\n{log}",
        lines.len()
    );
    assert!(lines.iter().all(|l| l.contains("WARN")), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    assert!(
        lines[0].contains("not acknowledged within its deadline (ack_deadline=200ms"),
        "{log}"
    );
    // The summaries account for the other 1,999.
    let summarised: u64 = lines[1..]
        .iter()
        .filter_map(|l| {
            let at = l.rfind("events=")? + "events=".len();
            l[at..].split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    assert_eq!(summarised, 1_999, "{log}");
    assert!(
        lines[1].contains("{\"type\":\"ack\",\"seq\":N}"),
        "the summary says what to do: {log}"
    );
    let (s, _) = api.http("GET", "/readyz", None, b"").await;
    assert_eq!(s, 200);
    let _ = std::fs::remove_dir_all(&dir);
}
