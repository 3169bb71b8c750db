//! The README's cluster quick start, run as written against the real binary: terminal 1's
//! Redis (a private `redis-server` on a free port stands in for port 6390), terminals 2 and 3's
//! nodes (`cargo run … --` replaced by the built `agentcast`, their ports by free ones),
//! terminal 4's token and Python `websockets` client, and terminal 5's curl; the receipt and
//! the event the client prints are checked.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agentcast_tests::{BinaryServer, RedisServer, strip_ansi};
use serde_json::Value;

mod readme;
use readme::{CARGO_RUN, CARGO_RUN_SERVER, blocks, exports, sh};

/// The README's `## Cluster mode (Redis)` section, its `sh` blocks.
fn terminals() -> Vec<String> {
    blocks(&readme::section("## Cluster mode (Redis)"))
        .into_iter()
        .filter(|(info, _)| info == "sh")
        .map(|(_, body)| body)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_cluster_quick_start_delivers_across_nodes() {
    let t = terminals();
    assert_eq!(t.len(), 5, "five terminals: {t:?}");
    assert!(t[0].contains("redis-server --port 6390"), "{}", t[0]);
    let redis = RedisServer::start();
    let bin = env!("CARGO_BIN_EXE_agentcast");
    // Terminals 2 and 3: the nodes.
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    for term in &t[1..3] {
        let envs = exports(term);
        let serve = term
            .lines()
            .find_map(|l| l.trim().strip_prefix(CARGO_RUN_SERVER))
            .expect("a node started with cargo run")
            .replace("127.0.0.1:6390", &format!("127.0.0.1:{}", redis.port));
        let mut args: Vec<&str> = serve.split_whitespace().collect();
        let at = args
            .iter()
            .position(|a| *a == "--listen")
            .expect("--listen");
        ports.push(args[at + 1].to_owned());
        args[at + 1] = "127.0.0.1:0";
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        nodes.push(BinaryServer::spawn(Path::new(bin), &args, &envs));
    }
    for n in &nodes {
        let api = n.api();
        let deadline = Instant::now() + Duration::from_secs(10);
        while api.http("GET", "/readyz", None, b"").await.0 != 200 {
            assert!(Instant::now() < deadline, "node not ready:\n{}", n.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let local = |s: &str| {
        s.replace(&ports[0], &nodes[0].addr.to_string())
            .replace(&ports[1], &nodes[1].addr.to_string())
    };
    // Terminal 4: the token, then the client.
    let client_line = t[3]
        .lines()
        .find(|l| l.trim_start().starts_with("python3 -m websockets"))
        .expect("terminal 4 runs python3 -m websockets");
    let setup: String = t[3]
        .lines()
        .filter(|l| *l != client_line)
        .collect::<Vec<_>>()
        .join("\n")
        .replace(CARGO_RUN, bin);
    let token = sh(&format!("{setup}\nprintf '%s' \"$TOKEN\""));
    let mut client = Command::new("sh")
        .args(["-c", &local(client_line)])
        .env("TOKEN", &token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 -m websockets");
    let stdout = client.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            if let Some(i) = line.find("< {")
                && let Ok(v) = serde_json::from_str(line[i + 2..].trim())
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let welcome = rx.recv_timeout(Duration::from_secs(20)).expect("a welcome");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    // Terminal 5: publish through the other node.
    let curl: String = t[4]
        .lines()
        .filter(|l| !l.trim_start().starts_with("# "))
        .collect::<Vec<_>>()
        .join("\n");
    let receipt: Value = serde_json::from_str(&sh(&local(&curl))).expect("a JSON receipt");
    assert_eq!(receipt["connections"], 1, "{receipt}");
    let event = rx.recv_timeout(Duration::from_secs(10)).expect("the event");
    assert_eq!(event["type"], "agent_started", "{event}");
    assert_eq!(event["seq"], receipt["seq"], "{event}");
    let _ = client.kill();
    let _ = client.wait();
}
