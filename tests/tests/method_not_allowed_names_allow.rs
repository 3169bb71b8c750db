//! A known path asked with a method it does not take answers `405 {"error": ...}` with an
//! `Allow` header naming the method it does take (RFC 9110 §15.5.6: "The origin server MUST
//! generate an Allow header field in a 405 response"); an unknown path answers 404 without
//! one. Found by schemathesis's `unsupported_method` check (scripts/schemathesis.sh).

use agentcast_tests::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Status, lowercased head and body of one request without a body.
async fn ask(server: &TestServer, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.addr
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_gets_405_with_allow_and_an_unknown_path_404() {
    let server = TestServer::start().await;
    for (method, path, allow) in [
        ("GET", "/api/v1/publish", "POST"),
        ("PUT", "/api/v1/publish/batch", "POST"),
        ("GET", "/api/v1/publish/stream", "POST"),
        ("DELETE", "/api/v1/ack", "POST"),
        ("POST", "/healthz", "GET"),
        ("TRACE", "/readyz", "GET"),
        ("POST", "/metrics", "GET"),
        ("PATCH", "/api/v1/stats", "GET"),
        ("POST", "/api/v1/stats/stream", "GET"),
        ("POST", "/api/v1/openapi.json", "GET"),
        ("POST", "/client.js", "GET"),
        ("POST", "/ws", "GET"),
        ("POST", "/sse", "GET"),
    ] {
        let (status, head, body) = ask(&server, method, path).await;
        assert_eq!(status, 405, "{method} {path}: {head}");
        assert!(
            head.contains(&format!("\r\nallow: {}", allow.to_ascii_lowercase())),
            "{method} {path}: no `Allow: {allow}` in {head}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        assert!(v["error"].is_string(), "{method} {path}: {body}");
    }
    let (status, head, _) = ask(&server, "GET", "/api/v1/no-such-route").await;
    assert_eq!(status, 404);
    assert!(!head.contains("\r\nallow:"), "{head}");
}
