//! Several node processes on one port: with `--reuse-port` (or `AGENTCAST_REUSE_PORT`) a
//! second binary listens on the address the first one holds, and the kernel spreads new
//! connections over both; without it the second one exits, naming the setting.

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, BinaryServer, SECRET, token};

/// Sockets process `pid` holds (entries of `/proc/<pid>/fd` that are sockets).
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_port_both_take_connections() {
    let bin = Path::new(env!("CARGO_BIN_EXE_agentcast"));
    let envs = [
        ("AGENTCAST_JWT_SECRET", SECRET),
        ("AGENTCAST_API_KEY", API_KEY),
    ];
    let a = BinaryServer::spawn(bin, &["--listen", "127.0.0.1:0", "--reuse-port"], &envs);
    let listen = a.addr.to_string();
    let env_b = [
        ("AGENTCAST_JWT_SECRET", SECRET),
        ("AGENTCAST_API_KEY", API_KEY),
        ("AGENTCAST_REUSE_PORT", "true"),
    ];
    let b = BinaryServer::spawn(bin, &["--listen", &listen], &env_b);
    assert_eq!(a.addr, b.addr);
    let (base_a, base_b) = (sockets_of(a.pid()), sockets_of(b.pid()));

    // 40 connections from different source ports: the kernel's hash puts some on each
    // (all 40 on one node has probability 2^-39).
    let api = a.api();
    let mut clients = Vec::new();
    for i in 0..40 {
        clients.push(api.connect(&token(&format!("rp-{i}"))).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (on_a, on_b) = (sockets_of(a.pid()) - base_a, sockets_of(b.pid()) - base_b);
    assert_eq!(
        on_a + on_b,
        40,
        "every connection is held by one of the two nodes"
    );
    assert!(
        on_a > 0 && on_b > 0,
        "both nodes took connections: {on_a} and {on_b}"
    );
    drop(clients);

    // A third process without the setting cannot bind, and says what to set.
    let (status, _, stderr) = BinaryServer::run_to_exit(bin, &["--listen", &listen], &envs);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("reuse_port"),
        "the error names the setting: {stderr}"
    );
}
