//! A node at its open-files limit: the binary raises its soft limit to the hard one at
//! start-up and logs both; once every descriptor is taken, a new connection gets a `503`
//! right away (not a stalled accept loop that leaves clients waiting out their timeouts), the
//! refusals are counted, and when connections close the node accepts again.
//!
//! `prlimit(1)` (util-linux) starts the binary with small limits, so the test does not need
//! thousands of sockets.

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, BinaryServer, Client, SECRET, parse_response, token};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The soft limit the process starts with, and the hard one it may raise it to.
const SOFT: u32 = 24;
const HARD: u32 = 64;

/// One `GET /healthz` on a new connection: the status, or 0 when the connection gave
/// no HTTP answer within 5 s.
async fn health_status(addr: std::net::SocketAddr) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw)).await;
    parse_response(&raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_out_of_descriptors_answers_503_and_accepts_again_when_they_free_up() {
    let bin = Path::new(env!("CARGO_BIN_EXE_agentcast"));
    let bin = bin.to_str().expect("utf-8 path");
    let nofile = format!("--nofile={SOFT}:{HARD}");
    let server = BinaryServer::spawn(
        Path::new("prlimit"),
        &[&nofile, "--", bin, "serve", "--listen", "127.0.0.1:0"],
        &[
            ("AGENTCAST_JWT_SECRET", SECRET),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    );
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("open files limit"))
        .unwrap_or_else(|| panic!("no open-files line in the log:\n{log}"));
    assert!(
        line.contains(&format!("soft={HARD}")) && line.contains(&format!("hard={HARD}")),
        "the soft limit is raised to the hard one: {line}"
    );
    assert!(line.contains(&format!("was={SOFT}")), "{line}");

    // Fill every descriptor with WebSocket connections (each holds one).
    let api = server.api();
    let mut clients: Vec<Client> = Vec::new();
    let mut refused = None;
    for i in 0..HARD {
        match tokio::time::timeout(
            Duration::from_secs(5),
            api.connect_query(&format!("token={}", token(&format!("fd-{i}")))),
        )
        .await
        {
            Ok(Ok(c)) => clients.push(c),
            Ok(Err(e)) => {
                refused = Some(format!("{e:?}"));
                break;
            }
            Err(_) => panic!(
                "connection {i} got no answer within 5 s: an exhausted node must refuse at once"
            ),
        }
    }
    let refused = refused.unwrap_or_else(|| {
        panic!("{HARD} connections were all accepted under a limit of {HARD} descriptors")
    });
    assert!(refused.contains("503"), "the refusal is a 503: {refused}");
    assert!(!clients.is_empty());

    // A plain HTTP request now gets the same answer, with its reason and a Retry-After.
    let (status, body) = health_status(server.addr).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("out of file descriptors"), "{body}");

    // Free a few descriptors: the node accepts again.
    for c in clients.drain(..4) {
        c.close().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = health_status(server.addr).await;
    assert_eq!(
        status, 200,
        "after connections closed the node serves again: {body}"
    );
    // The connections held all along were served throughout.
    let user = clients[0].welcome["user_id"]
        .as_str()
        .expect("user")
        .to_owned();
    let (s, v) = api
        .publish(&serde_json::json!({"user_id": user, "type": "agent_started", "run_id": "r", "data": {}}))
        .await;
    assert_eq!(s, 200, "{v}");
    let got = clients[0].next_json().await;
    assert_eq!(got["type"], "agent_started", "{got}");
    let metrics = api.http("GET", "/metrics", None, b"").await.1;
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("agentcast_server_accept_out_of_files_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no accept_out_of_files counter:\n{metrics}"));
    assert!(counted >= 2.0, "both refusals were counted: {counted}");
    assert!(
        server.log().contains("out of file descriptors"),
        "the node warned: {}",
        server.log()
    );
}
