//! The web pages in a real browser: headless Chromium (Debian's `/usr/bin/chromium`, or
//! `AGENTCAST_CHROMIUM`) driven by playwright-core from `tests/browser/run.mjs`, against a
//! real server in dev mode on `127.0.0.1:0`.
//!
//! Each test runs one case of the script and fails on a non-zero exit. A missing Chromium,
//! Node.js or `tests/browser/node_modules` fails the test with the command that installs it
//! (`.ci/run` installs them). Screenshots go to `tests/artifacts/` (not committed), and the
//! README's two pictures, `docs/img/demo.png` and `docs/img/dashboard.png`, are rewritten
//! from the live pages by the demo-run and dashboard cases once their data has arrived (the
//! dashboard's after its latency chart has a line and every component `/readyz` reports has
//! a health row), so they always show what the pages show. A picture that differs from the
//! committed one fails nothing; commit it when the pages change.
//!
//! The cases run one at a time (a process-wide lock): each starts a browser, and the machine
//! running the suite may have two cores.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agentcast_tests::{API_KEY, TestServer};

/// Longest a case may take, browser start-up included.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// One browser at a time.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The README's pictures: `docs/img/` of the workspace.
fn docs_img() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img")
}

/// Panics, naming the fix, when something the browser tests need is missing.
fn require_tools() -> PathBuf {
    let chromium = std::env::var_os("AGENTCAST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.exists(),
        "browser tests need Chromium at {}: install it with `apt-get install -y chromium` \
         (or set AGENTCAST_CHROMIUM), or run .ci/run, which installs it",
        chromium.display()
    );
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        node_ok,
        "browser tests need Node.js (>= 20) on PATH: `apt-get install -y nodejs npm`"
    );
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .exists(),
        "browser tests need playwright-core in {}/node_modules: run `npm ci --prefix tests/browser` \
         (or .ci/run, which does)",
        dir.display()
    );
    chromium
}

/// Starts a dev-mode server, runs `node run.mjs <case>` against it, and asserts success.
async fn run_case(case: &str) {
    let chromium = require_tools();
    let _one_at_a_time = BROWSER.lock().await;
    let mut server = TestServer::start_with(|cfg| cfg.dev_mode = true).await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    let child = tokio::process::Command::new("node")
        .arg(browser_dir().join("run.mjs"))
        .arg(case)
        .arg("--base")
        .arg(format!("http://{}", server.addr))
        .arg("--api-key")
        .arg(API_KEY)
        .arg("--artifacts")
        .arg(&artifacts)
        .arg("--docs-img")
        .arg(docs_img())
        .env("AGENTCAST_CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let out = tokio::time::timeout(CASE_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("browser case {case} took over {CASE_TIMEOUT:?}"))
        .expect("wait for node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "browser case {case} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("[{case}] PASS")),
        "browser case {case} exited 0 without passing:\n{stdout}"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_shows_a_published_run_in_order_with_seqs_and_acks_critical_events() {
    run_case("demo-run").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_resumes_after_the_server_drops_it_and_shows_every_event_published_meanwhile() {
    run_case("demo-resume").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_pages_ag_ui_toggle_shows_the_same_run_as_the_ag_ui_stream_and_resumes_it() {
    run_case("demo-ag-ui").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_connections_throughput_and_health() {
    run_case("dashboard").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browsers_event_source_streams_a_message_and_resumes_it_with_last_event_id() {
    run_case("sse-eventsource").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_falls_back_to_sse_when_the_websocket_upgrade_fails_and_streams_an_answer() {
    run_case("sse-fallback").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packages_example_page_shows_a_published_run_and_assembles_its_streamed_answer() {
    run_case("example").await;
}
