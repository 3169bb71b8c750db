//! Dev mode from the real binary: the banner's `connect` URL and its printed `curl` name the
//! user the demo page connects as by default, so running the printed curl shows an event on
//! the printed demo page (and on the printed connect URL).

use std::path::Path;
use std::process::Command;

use agentcast_tests::{BinaryServer, TestServer};
use serde_json::Value;

/// Runs `sh -c <script>` and returns its stdout; it must exit 0.
fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banners_curl_delivers_to_the_demo_pages_default_user() {
    let bin = Path::new(env!("CARGO_BIN_EXE_agentcast"));
    let server = BinaryServer::spawn(bin, &["serve", "--listen", "127.0.0.1:0"], &[]);
    let log = server.log();
    assert!(log.contains("DEV MODE"), "no dev banner:\n{log}");

    // The banner's connect URL: its token's `sub` is the banner's user.
    let url = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("connect    : "))
        .unwrap_or_else(|| panic!("no connect line:\n{log}"))
        .trim();
    let query = url.split_once('?').expect("a query").1;
    // The printed curl, as printed: from `publish    : ` to the line with the URL.
    let lines: Vec<&str> = log.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains("publish    : "))
        .unwrap_or_else(|| panic!("no publish line:\n{log}"));
    let last = first
        + lines[first..]
            .iter()
            .position(|l| l.contains("/api/v1/publish"))
            .expect("the curl's URL line");
    let curl = lines[first..=last]
        .join("\n")
        .replacen("publish    : ", "", 1);

    // What the demo page does with no `?user=`: ask the dev endpoint for a token.
    let demo = sh(&format!("curl -sf http://{}/api/v1/dev/token", server.addr));
    let demo: Value = serde_json::from_str(&demo).expect("dev token JSON");
    let demo_user = demo["user_id"].as_str().expect("user_id").to_owned();
    let demo_js = sh(&format!("curl -sf http://{}/demo.js", server.addr));
    assert!(
        demo_js.contains(&format!("|| '{demo_user}'")),
        "demo.js does not default to {demo_user}"
    );

    let api: TestServer = server.api();
    let mut banner_conn = api.connect_query(query).await.expect("banner URL connects");
    let mut page_conn = api.connect(demo["token"].as_str().expect("token")).await;
    let receipt: Value = serde_json::from_str(&sh(&curl)).expect("receipt JSON");
    assert_eq!(
        receipt["connections"], 2,
        "the printed curl reached {receipt} (banner user vs demo user `{demo_user}`)"
    );
    for conn in [&mut banner_conn, &mut page_conn] {
        let ev = conn.next_json().await;
        assert_eq!(ev["type"], "agent_started", "{ev}");
        assert_eq!(ev["seq"], receipt["seq"], "{ev}");
    }
}
