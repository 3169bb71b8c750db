//! The real `agentcast` binary reads its settings from the TOML file, overridden by
//! `AGENTCAST_*` environment variables, overridden by flags.

use std::path::{Path, PathBuf};

use agentcast_tests::{BinaryServer, SECRET};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_agentcast"))
}

/// A TOML file in the temp directory, removed when dropped.
struct TempToml(PathBuf);

impl TempToml {
    fn new(text: &str) -> TempToml {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "agentcast-precedence-{}-{nanos}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write config");
        TempToml(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn publish_status(server: &BinaryServer, key: &str) -> u16 {
    let (status, _) = server
        .api()
        .http(
            "POST",
            "/api/v1/publish",
            Some(key),
            br#"{"user_id":"u","type":"custom_x"}"#,
        )
        .await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_the_file_and_flags_override_the_environment() {
    let file = TempToml::new(&format!(
        "listen = \"127.0.0.2:0\"\njwt_secret = \"{SECRET}\"\napi_key = \"file-key\"\n"
    ));
    // File alone.
    let server = BinaryServer::spawn(bin(), &["serve", "--config", file.path()], &[]);
    assert_eq!(
        server.addr.ip().to_string(),
        "127.0.0.2",
        "{}",
        server.log()
    );
    assert_eq!(publish_status(&server, "file-key").await, 200);
    drop(server);

    // The environment beats the file.
    let env = [
        ("AGENTCAST_LISTEN", "127.0.0.3:0"),
        ("AGENTCAST_API_KEY", "env-key"),
    ];
    let server = BinaryServer::spawn(bin(), &["serve", "--config", file.path()], &env);
    assert_eq!(
        server.addr.ip().to_string(),
        "127.0.0.3",
        "{}",
        server.log()
    );
    assert_eq!(publish_status(&server, "env-key").await, 200);
    assert_eq!(publish_status(&server, "file-key").await, 401);
    drop(server);

    // A flag beats the environment (and the file).
    let server = BinaryServer::spawn(
        bin(),
        &[
            "serve",
            "--config",
            file.path(),
            "--listen",
            "127.0.0.4:0",
            "--api-key",
            "flag-key",
        ],
        &env,
    );
    assert_eq!(
        server.addr.ip().to_string(),
        "127.0.0.4",
        "{}",
        server.log()
    );
    assert_eq!(publish_status(&server, "flag-key").await, 200);
    assert_eq!(publish_status(&server, "env-key").await, 401);
}

#[test]
fn a_listen_flag_on_loopback_wins_over_a_public_listen_in_the_environment_for_dev_mode() {
    // Dev mode (no secret, no key) is refused on the environment's 0.0.0.0 ...
    let (status, _, stderr) =
        BinaryServer::run_to_exit(bin(), &["serve"], &[("AGENTCAST_LISTEN", "0.0.0.0:0")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    // ... and entered when the flag names loopback: the flag is what counts.
    let server = BinaryServer::spawn(
        bin(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[("AGENTCAST_LISTEN", "0.0.0.0:0")],
    );
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert!(server.log().contains("DEV MODE"), "{}", server.log());
}
