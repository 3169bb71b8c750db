//! The README's streaming publish example, run as written against the real binary: its `sh`
//! block (the key and port filled in) pipes four NDJSON lines into `curl -T -`, and what curl
//! prints has the shape the README shows: one receipt per line, in order, then the final line.

use std::path::Path;

use agentcast_tests::{API_KEY, BinaryServer, SECRET, token};
use serde_json::Value;

mod readme;
use readme::{blocks, sh};

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_streaming_publish_curl_prints_what_the_readme_shows() {
    let section = readme::section("### Streaming publish");
    let all = blocks(&section);
    let script = &all.iter().find(|(i, _)| i == "sh").expect("an sh block").1;
    let shown = &all
        .iter()
        .find(|(i, _)| i == "text")
        .expect("a text block")
        .1;
    let bin = Path::new(env!("CARGO_BIN_EXE_agentcast"));
    let server = BinaryServer::spawn(
        bin,
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("AGENTCAST_JWT_SECRET", SECRET),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    );
    // Alice connected, as the README says.
    let mut alice = server.api().connect(&token("alice")).await;
    let script = script
        .replace("KEY=...", &format!("KEY={API_KEY}"))
        .replace("127.0.0.1:8080", &server.addr.to_string());
    let got = lines(&sh(&script));
    let want = lines(shown);
    assert_eq!(got.len(), want.len(), "curl printed {got:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(keys(g), keys(w), "{g} vs the README's {w}");
        for k in [
            "line",
            "connections",
            "end",
            "last_line",
            "published",
            "failed",
        ] {
            assert_eq!(g.get(k), w.get(k), "`{k}` of {g} vs the README's {w}");
        }
    }
    let types: Vec<String> = alice
        .take(4)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "message_started",
            "message_delta",
            "message_delta",
            "message_completed"
        ]
    );
}
