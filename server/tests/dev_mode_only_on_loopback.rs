//! The real `agentcast` binary enters dev mode (no secret, no key) only on a loopback listen
//! address: on 127.0.0.1 it prints the banner and its dev token endpoint works; on 0.0.0.0 it
//! refuses to start, says why, and exits with code 2.

use std::path::Path;

use agentcast_tests::BinaryServer;
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_agentcast"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_is_entered_on_loopback_with_a_banner_and_a_working_token_endpoint() {
    let server = BinaryServer::spawn(bin(), &["serve", "--listen", "127.0.0.1:0"], &[]);
    let log = server.log();
    assert!(log.contains("DEV MODE"), "no banner:\n{log}");
    let api = server.api();
    let (status, body) = api
        .http_with_headers("GET", "/api/v1/dev/token?user=laptop", &[], b"")
        .await;
    assert_eq!(status, 200, "{body}\nlog:\n{log}");
    let t: Value = serde_json::from_str(&body).expect("token JSON");
    let mut client = api.connect(t["token"].as_str().expect("token")).await;
    assert_eq!(client.welcome["user_id"], "laptop");
    // The API key the banner printed publishes.
    let key = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("api key"))
        .and_then(|rest| rest.split(':').nth(1))
        .map(str::trim)
        .expect("banner names the api key");
    let (status, body) = api
        .http(
            "POST",
            "/api/v1/publish",
            Some(key),
            br#"{"user_id":"laptop","type":"agent_started","run_id":"r"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(client.next_json().await["type"], "agent_started");
}

#[test]
fn dev_mode_on_a_public_address_is_refused_with_exit_code_2() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (status, stdout, stderr) =
            BinaryServer::run_to_exit(bin(), &["serve", "--listen", listen], &[]);
        assert_eq!(status.code(), Some(2), "{listen}: {status}\n{stderr}");
        assert!(
            stderr.contains("refusing to start in dev mode") && stderr.contains("loopback"),
            "{listen}: {stderr}"
        );
        assert!(!stderr.contains("DEV MODE"), "banner printed: {stderr}");
        assert!(
            !stderr.contains("agentcast listening"),
            "it listened: {stderr}"
        );
        assert!(stdout.is_empty(), "{stdout}");
    }
}

#[test]
fn a_public_address_with_a_secret_and_key_is_not_dev_mode_and_starts() {
    let server = BinaryServer::spawn(
        bin(),
        &["serve", "--listen", "0.0.0.0:0"],
        &[
            ("AGENTCAST_JWT_SECRET", agentcast_tests::SECRET),
            ("AGENTCAST_API_KEY", agentcast_tests::API_KEY),
        ],
    );
    assert!(!server.log().contains("DEV MODE"), "{}", server.log());
}
