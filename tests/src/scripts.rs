//! Clients not written in Rust, run as child processes: Python scripts in `tests/py/` that
//! print one line per step, and Node.js scripts in `tests/node/` that exit 0 with `"ok":true`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::{API_KEY, SECRET, TestServer, WAIT};

/// A Python client script, its stdout read line by line.
pub struct PyClient {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    package: &'static str,
}

impl PyClient {
    /// Runs `python3 tests/py/<script> <args>`; `package` is the pip package it needs (named
    /// in the failure message).
    pub fn spawn(script: &str, args: &[&str], package: &'static str) -> PyClient {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("py")
            .join(script);
        let mut child = Command::new("python3")
            .arg(path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 ({e}): install Python 3 and `pip install {package}`")
            });
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        PyClient {
            child,
            lines,
            package,
        }
    }

    /// The next line the script printed; panics after [`WAIT`].
    pub async fn next_line(&mut self) -> Option<String> {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("python client timed out")
            .expect("read python stdout")
    }

    /// Reads the first line and fails with the script's stderr unless it is `want`.
    pub async fn expect_first(&mut self, want: &str) {
        let first = self.next_line().await;
        if first.as_deref() != Some(want) {
            let _ = self.child.kill().await;
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
            }
            panic!(
                "python client failed: {first:?}\n{err}\nThis test needs python3 with the `{}` package: pip install {}",
                self.package, self.package
            );
        }
    }

    /// Waits for the script to exit and returns whether it succeeded.
    pub async fn wait_success(mut self) -> bool {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("python client did not exit")
            .expect("wait for python")
            .success()
    }
}

/// Runs `node --experimental-websocket tests/node/<script> <http base> <secret> <api key>`
/// against `server` and asserts it exits 0 printing `"ok":true`.
pub async fn run_node_script(server: &TestServer, script: &str) {
    run_node_script_with(server, script, &[]).await;
}

/// [`run_node_script`] with `extra` arguments after the API key.
pub async fn run_node_script_with(server: &TestServer, script: &str, extra: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("node")
        .join(script);
    run_node_file(server, &path, &["--experimental-websocket"], extra).await;
}

/// Runs `node <flags> --no-warnings <path> <http base> <secret> <api key> <extra>` against
/// `server` and asserts it exits 0 printing `"ok":true`.
pub async fn run_node_file(server: &TestServer, path: &Path, flags: &[&str], extra: &[&str]) {
    let script = path.display();
    let base = format!("http://{}", server.addr);
    let child = Command::new("node")
        .args(flags)
        .arg("--no-warnings")
        .arg(path)
        .args([&base, SECRET, API_KEY])
        .args(extra)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 60 s"))
        .unwrap_or_else(|e| {
            panic!("this test needs Node.js (>= 20) on PATH (`apt-get install -y nodejs`): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("\"ok\":true"), "{stdout}\n{stderr}");
}
