//! The real `agentcast` binary's token settings: a `jwt_secret` under 32 bytes stops start-up
//! with a clear message; a public key without an audience logs a warning; the maximum token
//! lifetime comes from `AGENTCAST_JWT_MAX_LIFETIME_SECS`, overridden by
//! `--jwt-max-lifetime-secs`.

use std::path::{Path, PathBuf};

use agentcast_tests::{API_KEY, BinaryServer, SECRET, now, sign_hs256};
use serde_json::json;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_agentcast"))
}

fn rsa_public_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/keys/rsa_public.pem")
}

#[test]
fn the_binary_refuses_a_jwt_secret_shorter_than_32_bytes() {
    let (status, _, stderr) = BinaryServer::run_to_exit(
        bin(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("AGENTCAST_JWT_SECRET", "only-31-bytes-long-secret-value"),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    );
    assert!(!status.success(), "started with a 31-byte secret: {stderr}");
    assert!(
        stderr.contains("jwt_secret")
            && stderr.contains("31 bytes")
            && stderr.contains("at least 32"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_warns_when_a_public_key_has_no_audience() {
    let key = rsa_public_key();
    let key = key.to_str().expect("utf-8 path");
    let server = BinaryServer::spawn(
        bin(),
        &["serve", "--listen", "127.0.0.1:0", "--jwt-public-key", key],
        &[("AGENTCAST_API_KEY", API_KEY)],
    );
    let log = server.log();
    assert!(
        log.contains("jwt_public_key is set but jwt_audience is not"),
        "{log}"
    );
    drop(server);
    let server = BinaryServer::spawn(
        bin(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-public-key",
            key,
            "--jwt-audience",
            "app",
        ],
        &[("AGENTCAST_API_KEY", API_KEY)],
    );
    assert!(
        !server.log().contains("jwt_audience is not"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maximum_token_lifetime_comes_from_env_then_flag() {
    let envs = [
        ("AGENTCAST_JWT_SECRET", SECRET),
        ("AGENTCAST_API_KEY", API_KEY),
        ("AGENTCAST_JWT_MAX_LIFETIME_SECS", "60"),
    ];
    let two_minutes = sign_hs256(&json!({"sub": "m", "exp": now() + 120}), SECRET);
    let server = BinaryServer::spawn(bin(), &["serve", "--listen", "127.0.0.1:0"], &envs);
    let (status, body) = server.api().refused(&format!("token={two_minutes}")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("maximum of 60 seconds"),
        "{body}"
    );
    drop(server);
    let server = BinaryServer::spawn(
        bin(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-max-lifetime-secs",
            "300",
        ],
        &envs,
    );
    server.api().connect(&two_minutes).await;
}
