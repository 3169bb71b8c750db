//! `command_queue_capacity` reaches the binary from `AGENTCAST_COMMAND_QUEUE_CAPACITY` and
//! `--command-queue-capacity`, the flag winning over the environment; 0 is refused.

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, BinaryServer, SECRET};

#[test]
fn a_zero_capacity_from_the_environment_is_refused_unless_the_flag_overrides_it() {
    let bin = Path::new(env!("CARGO_BIN_EXE_agentcast"));
    let envs = [
        ("AGENTCAST_JWT_SECRET", SECRET),
        ("AGENTCAST_API_KEY", API_KEY),
        ("AGENTCAST_COMMAND_QUEUE_CAPACITY", "0"),
    ];
    let (status, _, stderr) =
        BinaryServer::run_to_exit(bin, &["serve", "--listen", "127.0.0.1:0"], &envs);
    assert!(!status.success(), "a zero bound must be refused");
    assert!(
        stderr.contains("command_queue_capacity"),
        "stderr:\n{stderr}"
    );

    let mut server = BinaryServer::spawn(
        bin,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--command-queue-capacity",
            "8",
        ],
        &envs,
    );
    server.sigterm();
    let exit = server.wait_exit(Duration::from_secs(15));
    assert!(exit.success(), "exit {exit}; log:\n{}", server.log());
}
