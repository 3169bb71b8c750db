//! The JavaScript/TypeScript package `agentcast-client` (`sdk/js`), whose source is also what
//! the binary serves at `/client.js` (and `/sse.js`, `/messages.js`):
//!
//! - its hand-written declarations type-check a strict consumer of the whole public API
//!   (`tsc -p sdk/js`: `sdk/js/test/consumer.ts`, imported by package name, passing the `ws`
//!   and `eventsource` classes with their own types as options), and reject the
//!   mistakes of `sdk/js/test/negative.ts` with exactly one error on each line marked
//!   `// error` and none elsewhere (so the check cannot pass vacuously);
//! - in Node.js 20 without flags (no global WebSocket nor EventSource),
//!   `sdk/js/test/node_client.mjs` runs the package over WebSocket (the `ws` package as its
//!   `WebSocket` option) and over SSE (the `eventsource` package as its `EventSource` option)
//!   against a real server: a resume after a server-side close delivers every seq once,
//!   acks bring the server's unacked count to 0, and an expired token is refreshed.
//!
//! TypeScript, `ws` (and `@types/ws`) and `eventsource` come from `tests/browser/node_modules`
//! (`npm ci --prefix tests/browser`, which `.ci/run` does); a missing one fails with that
//! command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentcast_tests::{TestServer, run_node_file};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs `tsc -p <project>` with the TypeScript of `tests/browser/node_modules`.
async fn tsc(project: &str) -> std::process::Output {
    let tsc = repo().join("tests/browser/node_modules/typescript/bin/tsc");
    assert!(
        tsc.exists(),
        "this test needs TypeScript in tests/browser/node_modules: run `npm ci --prefix tests/browser` \
         (or .ci/run, which does)"
    );
    let child = tokio::process::Command::new("node")
        .arg(&tsc)
        .arg("--pretty")
        .arg("false")
        .arg("-p")
        .arg(repo().join(project))
        .current_dir(repo())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("tsc took over 120 s")
        .expect("this test needs Node.js (>= 20) on PATH")
}

#[tokio::test]
async fn the_declarations_type_check_a_strict_consumer_of_the_whole_api() {
    let out = tsc("sdk/js").await;
    assert!(
        out.status.success(),
        "tsc rejected sdk/js/test/consumer.ts:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_declarations_reject_each_marked_mistake_and_nothing_else() {
    let source =
        std::fs::read_to_string(repo().join("sdk/js/test/negative.ts")).expect("read negative.ts");
    let marked: Vec<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_end().ends_with("// error"))
        .map(|(i, _)| i + 1)
        .collect();
    assert!(marked.len() >= 5, "negative.ts marks only {marked:?}");
    let out = tsc("sdk/js/test/tsconfig.negative.json").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "tsc accepted negative.ts:\n{stdout}");
    // One line per error: `sdk/js/test/negative.ts(LINE,COL): error TSxxxx: ...`.
    let mut errors: Vec<usize> = stdout
        .lines()
        .filter(|l| l.contains(": error TS"))
        .map(|l| {
            let at = l
                .split_once("negative.ts(")
                .unwrap_or_else(|| panic!("an error outside negative.ts: {l}"))
                .1;
            at.split(',')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{l}"))
        })
        .collect();
    errors.sort_unstable();
    assert_eq!(
        errors, marked,
        "tsc's errors are not exactly one per marked line:\n{stdout}"
    );
}

/// Runs `node sdk/js/test/node_client.mjs <base> <secret> <api key> <transport>` (no
/// `--experimental-websocket`: the package must bring its own WebSocket) against a dev-mode
/// server whose tokens expire to the second.
async fn node_client(transport: &str) {
    let mut server = TestServer::start_with(|c| {
        c.dev_mode = true;
        c.jwt_leeway_secs = 0;
    })
    .await;
    let script = repo().join("sdk/js/test/node_client.mjs");
    run_node_file(&server, &script, &[], &[transport]).await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_in_node_over_ws_resumes_without_duplicates_acks_and_refreshes_its_token() {
    node_client("ws").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_in_node_over_sse_resumes_without_duplicates_acks_and_refreshes_its_token() {
    node_client("sse").await;
}
