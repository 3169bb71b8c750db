//! The real `agentcast` binary, run as a process: it serves on the address it logs, answers
//! `/healthz`, and exits 0 after SIGTERM.

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, BinaryServer, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_healthz_and_exits_zero_on_sigterm() {
    let bin = Path::new(env!("CARGO_BIN_EXE_agentcast"));
    let mut server = BinaryServer::spawn(
        bin,
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("AGENTCAST_JWT_SECRET", SECRET),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    );
    let (status, _) = server.api().http("GET", "/healthz", None, b"").await;
    assert_eq!(status, 200, "log:\n{}", server.log());
    server.sigterm();
    let exit = server.wait_exit(Duration::from_secs(15));
    assert!(exit.success(), "exit {exit}; log:\n{}", server.log());
    assert!(
        server.log().contains("shutdown complete"),
        "log:\n{}",
        server.log()
    );
}
