//! A private `redis-server` for tests of cluster mode: started from `PATH` on a free port
//! of 127.0.0.1 (never the machine's shared 6379), without persistence, so a test can kill it
//! (SIGKILL) and start it again empty on the same port.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentcast_server::Config;

use crate::TestServer;

/// A `redis-server` child process. Killed on drop.
pub struct RedisServer {
    /// Where it listens.
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut r = RedisServer { port, child: None };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it with SIGKILL (no clean shutdown: clients see their connections reset).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again, empty) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one raw command (RESP) and returns the raw reply.
    pub fn command(&self, args: &[&str]) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).expect("write to redis");
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn answers_ping(&self) -> bool {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            && self.command(&["PING"]).starts_with("+PONG")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node of a cluster on `redis`: a [`TestServer`] with `redis_url` set and fast health.
pub async fn cluster_node(
    redis: &RedisServer,
    name: &str,
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    let url = redis.url();
    let node = TestServer::start_with(|cfg| {
        cfg.redis_url = Some(url);
        cfg.node_id = Some(name.to_owned());
        cfg.health.interval_ms = 100;
        tweak(cfg);
    })
    .await;
    node.wait_broker_up().await;
    node
}

impl TestServer {
    /// Waits (10 s at most) until `/readyz` reports the `broker` component healthy.
    pub async fn wait_broker_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = self.http("GET", "/readyz", None, b"").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if v["components"]["broker"]["state"] == "healthy" {
                return;
            }
            assert!(Instant::now() < deadline, "broker not up: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
