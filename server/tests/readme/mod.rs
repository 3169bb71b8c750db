//! Helpers of the tests that run the README's commands as written: its sections, their
//! fenced blocks, the `export`s they set, and `sh` without the test's own `AGENTCAST_*`.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// How the README runs the binary; the tests run the built one instead.
pub(crate) const CARGO_RUN: &str = "cargo run -q --release -p agentcast-server --bin agentcast --";
pub(crate) const CARGO_RUN_SERVER: &str =
    "cargo run --release -p agentcast-server --bin agentcast --";

/// The README from the line `heading` (e.g. `## Quick start`) to the next `## ` heading.
pub(crate) fn section(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let start = readme
        .find(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("a `{heading}` section"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

/// The fenced blocks of `text` as (info string, body).
pub(crate) fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            out.push((info.trim().to_owned(), body.join("\n")));
        }
    }
    out
}

/// `export A=1 B=2` → [(A, 1), (B, 2)].
pub(crate) fn exports(script: &str) -> Vec<(String, String)> {
    script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs `sh -c script` with no `AGENTCAST_*` from the test's environment; returns stdout.
pub(crate) fn sh(script: &str) -> String {
    let mut cmd = Command::new("sh");
    for (k, _) in std::env::vars() {
        if k.starts_with("AGENTCAST_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.args(["-c", script]).output().expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
