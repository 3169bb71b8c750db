//! The real binary's log: no ANSI colour escapes when stderr is a pipe or a file (so log files
//! stay plain text), colour on a terminal, and none on a terminal when `NO_COLOR` is set.
//! The terminal cases run the binary under `script(1)`, which gives it a pseudo-terminal.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentcast_tests::{API_KEY, BinaryServer, SECRET};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_agentcast"))
}

const ESC: &str = "\u{1b}[";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_written_to_a_pipe_has_no_colour_escapes() {
    let mut server = BinaryServer::spawn(
        bin(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("AGENTCAST_JWT_SECRET", SECRET),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    );
    // A few more lines: a refused publish and a shutdown.
    let (status, _) = server
        .api()
        .http("POST", "/api/v1/publish", None, b"{}")
        .await;
    assert_eq!(status, 401);
    server.sigterm();
    server.wait_exit(Duration::from_secs(15));
    let raw = server.log_raw();
    assert!(raw.contains("agentcast listening"), "{raw}");
    assert!(raw.contains("shutdown complete"), "{raw}");
    assert!(
        !raw.contains(ESC),
        "colour escapes in a piped log:\n{raw:?}"
    );
}

/// Runs the server under a pseudo-terminal until it logs `agentcast listening` (at most
/// 20 s), and returns everything it wrote to the terminal.
fn log_on_a_terminal(no_color: Option<&str>) -> String {
    let script = Path::new("/usr/bin/script");
    assert!(
        script.exists(),
        "this test needs script(1) from util-linux (`apt-get install -y bsdutils`)"
    );
    let inner = format!("exec {} serve --listen 127.0.0.1:0", bin().display());
    let mut cmd = Command::new(script);
    cmd.args(["-qfec", &inner, "/dev/null"])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env("AGENTCAST_JWT_SECRET", SECRET)
        .env("AGENTCAST_API_KEY", API_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let mut child = cmd.spawn().expect("spawn script");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut out = out;
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&seen);
        if agentcast_tests::strip_ansi(&text).contains("agentcast listening") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // Killing `script` closes the terminal, and the server, its session leader, gets SIGHUP.
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        agentcast_tests::strip_ansi(&text).contains("agentcast listening"),
        "the server did not start under script(1):\n{text}"
    );
    text
}

#[test]
fn log_on_a_terminal_is_coloured() {
    let text = log_on_a_terminal(None);
    assert!(text.contains(ESC), "no colour on a terminal:\n{text:?}");
}

#[test]
fn log_on_a_terminal_has_no_colour_with_no_color_set() {
    let text = log_on_a_terminal(Some("1"));
    assert!(!text.contains(ESC), "colour despite NO_COLOR:\n{text:?}");
}
