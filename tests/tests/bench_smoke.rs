//! `agentcast bench` end to end: the load generator's own machinery (its WebSocket client, HTTP
//! publisher, counters and histograms) against a real server on 127.0.0.1:0, for about two
//! seconds per scenario with a few hundred connections. A clean server must show every
//! measured event delivered to every device it was meant for, once, and nothing to anybody
//! else.

use std::time::Duration;

use agentcast_server::Config;
use agentcast_server::bench::report::Report;
use agentcast_server::bench::{self, BenchArgs};
use agentcast_tests::{API_KEY, SECRET, TestServer};

/// Parses `agentcast --jwt-secret .. --api-key .. bench <flags>` exactly as the binary does.
fn bench_args(server: &TestServer, flags: &[&str]) -> (BenchArgs, Config) {
    let url = format!("http://{}", server.addr);
    let pid = std::process::id().to_string();
    let mut argv = vec![
        "agentcast",
        "--jwt-secret",
        SECRET,
        "--api-key",
        API_KEY,
        "bench",
        "--url",
        &url,
        "--server-pid",
        &pid,
    ];
    argv.extend_from_slice(flags);
    bench::parse_command_line(argv).expect("bench flags parse")
}

/// Runs the bench on a plain thread (it builds its own runtimes) and waits for it.
async fn run_bench(args: BenchArgs, cfg: Config) -> Report {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(bench::run(&args, &cfg).map_err(|e| format!("{e:#}")));
    });
    tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("bench did not finish within 60 s")
        .expect("bench thread died")
        .expect("bench failed")
}

fn assert_clean(r: &Report) {
    let table = r.table();
    assert_eq!(r.connections, r.connections_requested, "{table}");
    assert_eq!(r.connect_failed, 0, "{table}");
    assert_eq!(r.publish_errors, 0, "{table}");
    assert!(r.events_sent > 0, "{table}");
    assert!(r.deliveries_expected > 0, "{table}");
    assert_eq!(r.deliveries_received, r.deliveries_expected, "{table}");
    assert_eq!(r.loss, 0, "{table}");
    assert_eq!(r.leaks, 0, "{table}");
    assert_eq!(r.duplicates, 0, "{table}");
    assert_eq!(r.disconnects, 0, "{table}");
    assert_eq!(r.protocol_errors, 0, "{table}");
    assert_eq!(r.latency.count, r.deliveries_received, "{table}");
    assert!(
        r.latency.p50_us > 0.0 && r.latency.p50_us <= r.latency.max_us,
        "{table}"
    );
    assert!(r.clean(), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_load_reaches_every_device_of_its_user_only() {
    let server = TestServer::start().await;
    let (args, cfg) = bench_args(
        &server,
        &[
            "--connections",
            "300",
            "--users",
            "100",
            "--scenario",
            "per-user",
            "--rate",
            "400",
            "--duration",
            "2",
            "--warmup",
            "0.3",
            "--publishers",
            "4",
            "--connect-rate",
            "3000",
        ],
    );
    let r = run_bench(args, cfg).await;
    assert_clean(&r);
    // Three devices per user: every accepted event is expected three times, and the server's
    // receipts agree.
    assert_eq!(r.deliveries_expected, 3 * r.events_sent, "{}", r.table());
    assert_eq!(r.server_receipt_connections, r.deliveries_expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_load_reaches_every_connection() {
    let server = TestServer::start().await;
    let (args, cfg) = bench_args(
        &server,
        &[
            "--connections",
            "300",
            "--scenario",
            "broadcast",
            "--interval-ms",
            "50",
            "--duration",
            "2",
            "--warmup",
            "0.3",
            "--connect-rate",
            "3000",
        ],
    );
    let r = run_bench(args, cfg).await;
    assert_clean(&r);
    assert_eq!(r.deliveries_expected, 300 * r.events_sent, "{}", r.table());
    assert!(r.events_sent >= 30, "{}", r.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_every_connection_and_the_run_is_not_clean() {
    let server = TestServer::start().await;
    let (args, mut cfg) = bench_args(
        &server,
        &[
            "--connections",
            "20",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--drain",
            "0.2",
        ],
    );
    cfg.jwt_secret = Some("not-the-server-secret-but-32-bytes-long".into());
    let r = run_bench(args, cfg).await;
    assert_eq!(r.connections, 0, "{}", r.table());
    assert_eq!(r.connect_failed, 20);
    assert!(
        r.connect_error.as_deref().unwrap_or("").contains("401"),
        "{:?}",
        r.connect_error
    );
    assert!(!r.clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_streamed_or_requested_rebuild_every_text_exactly() {
    let server = TestServer::start().await;
    for mode in ["stream", "requests"] {
        let (args, cfg) = bench_args(
            &server,
            &[
                "--scenario",
                "tokens",
                "--runs",
                "8",
                "--tokens-per-sec",
                "50",
                "--duration",
                "1",
                "--publishers",
                "3",
                "--token-publish",
                mode,
            ],
        );
        let r = run_bench(args, cfg).await;
        let table = r.table();
        let t = r.tokens.clone().expect("token figures");
        assert_eq!(t.publish, mode, "{table}");
        assert_eq!(r.publish_errors, 0, "{table}");
        assert_eq!(t.tokens_sent, 8 * 50, "{table}");
        assert_eq!(t.chars_sent, 8 * 50 * 8, "{table}");
        assert_eq!(t.chars_lost, 0, "{table}");
        assert_eq!(t.runs_complete, 8, "{table}");
        // One latency sample per token, merged or not.
        assert_eq!(r.latency.count, 8 * 50, "{table}");
        assert!(t.server_cpu_us_per_token.is_some(), "{table}");
        assert!(r.clean(), "{table}");
    }
}
