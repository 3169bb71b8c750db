//! The README's quick start, run as written against the real binary: the commands of its
//! three `sh` blocks (with `cargo run … --` replaced by the built `agentcast`, and port 8080
//! by the test server's port), the Python `websockets` client driven through its stdin, and
//! every output the README shows checked against what the commands print: the welcome, the
//! publish receipt, the delivered event, and the ack the reader is told to type.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agentcast_tests::{BinaryServer, strip_ansi};
use serde_json::Value;

mod readme;
use readme::{CARGO_RUN, CARGO_RUN_SERVER, blocks, exports, sh};

/// The quick start: the README from `## Quick start` to its `### Python` subsection (run by
/// the Python package's tests, sdk/python/tests/test_readme.py), or to the next `## ` heading.
fn quick_start() -> String {
    let section = readme::section("## Quick start");
    match section.find("\n### Python") {
        Some(i) => section[..=i].to_owned(),
        None => section,
    }
}

/// The keys of a JSON object.
fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// The JSON after `< ` on each line of `text` (the Python client's received messages).
fn received(text: &str) -> Vec<Value> {
    strip_ansi(text)
        .lines()
        .filter_map(|l| l.find("< {").map(|i| &l[i + 2..]))
        .map(|j| serde_json::from_str(j.trim()).unwrap_or_else(|e| panic!("{e}: {j}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_quick_start_commands_print_what_the_readme_shows() {
    let qs = quick_start();
    let all = blocks(&qs);
    let sh_blocks: Vec<&String> = all
        .iter()
        .filter(|(i, _)| i == "sh")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(sh_blocks.len(), 3, "three terminals:\n{qs}");
    let shown: Vec<&String> = all
        .iter()
        .filter(|(i, _)| i.is_empty())
        .map(|(_, b)| b)
        .collect();

    // Terminal 1: the exported settings, and the server command.
    let (t1, t2, t3) = (sh_blocks[0], sh_blocks[1], sh_blocks[2]);
    let env1 = exports(t1);
    let secret = env1
        .iter()
        .find(|(k, _)| k == "AGENTCAST_JWT_SECRET")
        .expect("terminal 1 exports the secret")
        .1
        .clone();
    assert!(
        secret.len() >= 32,
        "the quick start's secret is shorter than 32 bytes"
    );
    let serve = t1
        .lines()
        .find_map(|l| l.trim().strip_prefix(CARGO_RUN_SERVER))
        .expect("terminal 1 runs the server with cargo run");
    let bin = env!("CARGO_BIN_EXE_agentcast");
    let mut args: Vec<&str> = serve.split_whitespace().collect();
    args.extend(["--listen", "127.0.0.1:0"]);
    let envs: Vec<(&str, &str)> = env1.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = BinaryServer::spawn(Path::new(bin), &args, &envs);
    let addr = server.addr.to_string();
    let local = |s: &str| s.replace("127.0.0.1:8080", &addr);

    // Terminal 2: everything up to the client, as written; then the client itself.
    let client_line = t2
        .lines()
        .find(|l| l.trim_start().starts_with("python3 -m websockets"))
        .expect("terminal 2 runs python3 -m websockets");
    let setup: String = t2
        .lines()
        .filter(|l| !l.trim_start().starts_with("pip install") && *l != client_line)
        .collect::<Vec<_>>()
        .join("\n")
        .replace(CARGO_RUN, bin);
    let token = sh(&format!("{setup}\nprintf '%s' \"$TOKEN\""));
    assert_eq!(
        token.split('.').count(),
        3,
        "terminal 2 minted no JWT: {token}"
    );
    let mut client = Command::new("sh")
        .args(["-c", &local(client_line)])
        .env("TOKEN", &token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 -m websockets (pip install websockets)");
    let stdout = client.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = |what: &str, done: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&seen) {
            assert!(
                Instant::now() < deadline,
                "no {what} from the client:\n{seen}"
            );
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.push_str(&l);
                seen.push('\n');
            }
        }
        seen.clone()
    };
    let out = wait_for("welcome", &|s| {
        received(s).iter().any(|v| v["type"] == "welcome")
    });
    let expected_welcome: Vec<Value> = shown.iter().flat_map(|b| received(b)).collect();
    let readme_welcome = expected_welcome
        .iter()
        .find(|v| v["type"] == "welcome")
        .expect("the README shows the welcome");
    let welcome = received(&out)
        .into_iter()
        .find(|v| v["type"] == "welcome")
        .unwrap();
    assert_eq!(keys(&welcome), keys(readme_welcome), "welcome: {welcome}");
    assert_eq!(welcome["user_id"], readme_welcome["user_id"]);
    assert!(
        strip_ansi(&out).contains(&format!("Connected to ws://{addr}/ws?token=")),
        "the client does not print what the README shows:\n{out}"
    );

    // Terminal 3: the publish, and the receipt the README shows after `# `.
    let publish: Vec<&str> = t3
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let receipt: Value = serde_json::from_str(&sh(&local(&publish.join("\n")))).expect("receipt");
    let readme_receipt: Value = t3
        .lines()
        .filter_map(|l| l.trim().strip_prefix("# {"))
        .map(|j| serde_json::from_str(&format!("{{{j}")).expect("receipt JSON"))
        .next()
        .expect("the README shows the receipt");
    assert_eq!(keys(&receipt), keys(&readme_receipt), "receipt: {receipt}");
    assert_eq!(
        receipt["connections"], readme_receipt["connections"],
        "{receipt}"
    );

    // Terminal 2 prints the event as the README shows it.
    let out = wait_for("event", &|s| {
        received(s).iter().any(|v| v["type"] == "agent_started")
    });
    let event = received(&out)
        .into_iter()
        .find(|v| v["type"] == "agent_started")
        .unwrap();
    let readme_event = expected_welcome
        .iter()
        .find(|v| v["type"] == "agent_started")
        .expect("the README shows the event");
    assert_eq!(keys(&event), keys(readme_event), "event: {event}");
    assert_eq!(event["seq"], receipt["seq"]);
    for k in ["type", "run_id", "priority", "data"] {
        assert_eq!(event[k], readme_event[k], "{k} of {event}");
    }

    // The ack the README tells the reader to type, with the real seq.
    let ack_line = shown
        .iter()
        .flat_map(|b| b.lines())
        .find_map(|l| l.trim().strip_prefix("> {"))
        .expect("the README shows an ack to type");
    let mut ack: Value = serde_json::from_str(&format!("{{{ack_line}")).expect("ack JSON");
    assert_eq!(ack["type"], "ack");
    ack["seq"] = receipt["seq"].clone();
    let stdin = client.stdin.as_mut().expect("stdin");
    writeln!(stdin, "{ack}").expect("type the ack");
    stdin.flush().expect("flush");
    let api = server.api();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = api.http("GET", "/api/v1/stats", None, b"").await;
        let stats: Value = serde_json::from_str(&body).expect("stats JSON");
        if stats["engine"]["acks"] == 1 && stats["engine"]["unacked_critical"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the typed ack was not counted: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Closing stdin (Ctrl-D) ends the client.
    drop(client.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.try_wait().expect("try_wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "the client did not exit on end of input"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
