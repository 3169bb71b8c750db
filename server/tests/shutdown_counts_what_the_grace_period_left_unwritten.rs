//! When `shutdown_grace_ms` ends before a client took everything queued to it, the binary
//! does not lose the rest silently: it logs at WARN how many frames were not written, and
//! that number is exactly what the client is missing.

mod common;

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, BinaryServer, SECRET};
use common::{BlockedReader, TomlFile, publish_large};

const EVENTS: usize = 250;
const EVENT_BYTES: usize = 32 * 1024;

/// The `N` of the `shutdown: N queued frames were not written` log line.
fn unwritten_in(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.contains("queued frames were not written"))?;
    let (_, rest) = line.split_once("shutdown: ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_grace_logs_the_number_of_frames_a_blocked_reader_never_got() {
    let config = TomlFile::new(
        "shutdown-short-grace",
        "shutdown_grace_ms = 300\n[limits]\nwrite_timeout_ms = 60000\n",
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_agentcast"));
    let mut server = BinaryServer::spawn(
        bin,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.path.to_str().expect("utf-8 path"),
        ],
        &[
            ("AGENTCAST_JWT_SECRET", SECRET),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    );
    let reader = BlockedReader::connect(server.addr, "stuck", 16 * 1024).await;
    let seqs = publish_large(&server.api(), "stuck", EVENTS, EVENT_BYTES).await;

    server.sigterm();
    // The client reads nothing until the process is gone; then it takes what the kernel
    // buffers still hold.
    let exit = server.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "exit {exit}; log:\n{}", server.log());
    let got = reader.read_all(Duration::from_secs(10)).await;
    let log = server.log();

    assert!(
        got.seqs.len() < EVENTS,
        "the client should have missed some events: {} of {EVENTS} arrived",
        got.seqs.len()
    );
    assert_eq!(got.seqs, seqs[..got.seqs.len()], "what arrived is a prefix");
    let unwritten = unwritten_in(&log).unwrap_or_else(|| panic!("no count logged:\n{log}"));
    eprintln!(
        "received {} of {EVENTS} events; logged unwritten: {unwritten}",
        got.seqs.len()
    );
    assert_eq!(
        unwritten,
        (EVENTS - got.seqs.len()) as u64,
        "the logged count is exactly what the client missed; log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("queued frames were not written")),
        "logged at WARN:\n{log}"
    );
    assert!(log.contains("shutdown complete"), "log:\n{log}");
}
