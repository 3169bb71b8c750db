//! SIGTERM writes every event that got a receipt: a client that is not reading when the
//! shutdown begins, with more frames queued to it than the engine's hand-off queue holds (the
//! rest wait in its priority ring), still receives all of them, then the 1001 close.

mod common;

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, BinaryServer, SECRET};
use common::{BlockedReader, TomlFile, publish_large};

/// Events published: more than the hand-off queue (32) plus what the kernel buffers hold,
/// fewer than ring + hand-off (256 + 32), so no overflow policy applies.
const EVENTS: usize = 250;
/// Bytes of each event's data.
const EVENT_BYTES: usize = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_every_receipted_event_to_a_blocked_reader_then_closes_1001() {
    // A generous grace period and write timeout: the client starts reading only after the
    // SIGTERM, and nothing here may depend on the machine being fast.
    let config = TomlFile::new(
        "shutdown-writes-all",
        "shutdown_grace_ms = 60000\n[limits]\nwrite_timeout_ms = 60000\n",
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
    let reader = BlockedReader::connect(server.addr, "slow", 16 * 1024).await;
    let seqs = publish_large(&server.api(), "slow", EVENTS, EVENT_BYTES).await;

    server.sigterm();
    // Let the shutdown begin while the client still reads nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = reader.read_all(Duration::from_secs(30)).await;

    assert_eq!(
        got.seqs.len(),
        EVENTS,
        "events written before the close; log:\n{}",
        server.log()
    );
    assert_eq!(got.seqs, seqs, "every receipted seq, in order");
    assert_eq!(got.close, Some(1001), "then the 1001 close");
    let exit = server.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "exit {exit}; log:\n{}", server.log());
    let log = server.log();
    assert!(log.contains("shutdown complete"), "log:\n{log}");
    assert!(
        !log.contains("not written"),
        "nothing may be reported lost:\n{log}"
    );
}
