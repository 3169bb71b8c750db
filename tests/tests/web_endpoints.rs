//! The web endpoints over real sockets: compiled-in assets (content types, caching), the
//! stats stream (server-sent events, and a shutdown it must not hold up), and the dev-mode
//! endpoints (present only in dev mode; token, simulated run, forced disconnect).

use std::time::{Duration, Instant};

use agentcast_tests::{Incoming, TestServer, WAIT, token};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a raw request and returns the whole response text (until the server closes).
async fn raw(server: &TestServer, request: &str) -> String {
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("response within the wait")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn pages_and_client_are_served_with_their_content_type_and_revalidation() {
    let server = TestServer::start().await;
    for (path, ctype, marker) in [
        ("/", "text/html; charset=utf-8", "agentcast · live demo"),
        (
            "/dashboard",
            "text/html; charset=utf-8",
            "operator dashboard",
        ),
        (
            "/client.js",
            "text/javascript; charset=utf-8",
            "export class AgentcastClient",
        ),
        (
            "/sse.js",
            "text/javascript; charset=utf-8",
            "export class SseStream",
        ),
        (
            "/messages.js",
            "text/javascript; charset=utf-8",
            "export function applyMessage",
        ),
        ("/style.css", "text/css; charset=utf-8", ":root"),
    ] {
        let r = raw(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r:.200}");
        assert_eq!(header(&r, "content-type"), Some(ctype), "{path}");
        assert_eq!(header(&r, "cache-control"), Some("no-cache"), "{path}");
        assert_eq!(header(&r, "x-content-type-options"), Some("nosniff"));
        assert!(r.contains(marker), "{path} lacks {marker:?}");
        let etag = header(&r, "etag").expect("etag").to_owned();
        let again = raw(
            &server,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(again.starts_with("HTTP/1.1 304"), "{path}: {again:.200}");
        assert!(again.ends_with("\r\n\r\n"), "a 304 has no body");
    }
    let page = raw(
        &server,
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let csp = header(&page, "content-security-policy").expect("pages carry a CSP");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let (status, _) = server.http("POST", "/dashboard", None, b"").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn dev_endpoints_do_not_exist_outside_dev_mode() {
    let server = TestServer::start().await;
    for (method, path) in [
        ("GET", "/api/v1/dev/token"),
        ("POST", "/api/v1/dev/simulate"),
        ("POST", "/api/v1/dev/disconnect"),
    ] {
        let (status, body) = server.http(method, path, None, br#"{"user_id":"u"}"#).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn dev_token_connects_and_simulate_publishes_a_whole_run_in_order() {
    let server = TestServer::start_with(|c| c.dev_mode = true).await;
    let (status, body) = server
        .http_with_headers("GET", "/api/v1/dev/token?user=sim-user", &[], b"")
        .await;
    assert_eq!(status, 200, "{body}");
    let t: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(t["user_id"], "sim-user");
    let tok = t["token"].as_str().expect("token");
    let mut client = server.connect(tok).await;
    assert_eq!(client.welcome["user_id"], "sim-user");

    // The user may be named by their token instead of the body.
    let bearer = format!("Bearer {tok}");
    let (status, body) = server
        .http_with_headers(
            "POST",
            "/api/v1/dev/simulate",
            &[("Authorization", &bearer)],
            b"",
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let run: Value = serde_json::from_str(&body).expect("json");
    let started = Instant::now();
    let mut events = Vec::new();
    let total = run["events"].as_u64().expect("events") as usize;
    while events.len() < total {
        let v = client.next_json().await;
        assert_eq!(v["run_id"], run["run_id"], "{v}");
        events.push(v);
    }
    let types: Vec<_> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types[..7],
        [
            "agent_started",
            "agent_thinking",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "agent_thinking",
            "message_started",
        ]
    );
    // The answer, token by token, then the completions.
    assert!(types[7..total - 2].iter().all(|t| *t == "message_delta"));
    assert!(total - 9 > 5, "streamed in several deltas: {types:?}");
    assert_eq!(types[total - 2..], ["message_completed", "agent_completed"]);
    let answer: String = events[7..total - 2]
        .iter()
        .map(|e| e["data"]["delta"].as_str().expect("delta"))
        .collect();
    assert_eq!(
        answer,
        events[total - 1]["data"]["summary"].as_str().unwrap()
    );
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // Six steps of 300 ms (and the tokens, 40 ms apart) between the first and last event.
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    let (status, body) = server
        .http_with_headers("POST", "/api/v1/dev/simulate", &[], b"")
        .await;
    assert_eq!(status, 400, "no user named: {body}");
}

#[tokio::test]
async fn dev_disconnect_closes_only_that_users_connections_with_1012() {
    let server = TestServer::start_with(|c| c.dev_mode = true).await;
    let mut a1 = server.connect(&token("kick-a")).await;
    let mut a2 = server.connect(&token("kick-a")).await;
    let mut b = server.connect(&token("kick-b")).await;
    let (status, body) = server
        .http_with_headers(
            "POST",
            "/api/v1/dev/disconnect",
            &[],
            json!({"user_id": "kick-a"}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["connections"], 2);
    assert_eq!(a1.closed().await, Some(1012));
    assert_eq!(a2.closed().await, Some(1012));
    // The other user's connection is untouched and still answers.
    assert!(b.sync().await.is_empty());
    // A publish while kick-a is gone waits in history; a resume gets it.
    let last = a1.welcome["last_seq"].as_u64().expect("last_seq");
    let seq = server.publish_user("kick-a", json!({"n": 1})).await;
    let mut back = server
        .connect_query(&format!("token={}&last_seq={last}", token("kick-a")))
        .await
        .expect("reconnect");
    match back.next().await {
        Incoming::Json(e) => assert_eq!(e["seq"], seq, "{e}"),
        Incoming::Closed(c) => panic!("closed {c:?}"),
    }
}

/// Reads from `s` until `count` `data:` lines arrived; returns them.
async fn read_events(s: &mut TcpStream, buf: &mut String, count: usize) -> Vec<Value> {
    loop {
        let found: Vec<Value> = buf
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect();
        if found.len() >= count {
            return found;
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("a snapshot within the wait")
            .expect("read");
        assert!(n > 0, "stream ended early: {buf}");
        buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

#[tokio::test]
async fn stats_stream_sends_a_snapshot_each_second_and_ends_at_shutdown() {
    let mut server = TestServer::start().await;
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(b"GET /api/v1/stats/stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = String::new();
    let first = read_events(&mut s, &mut buf, 1).await;
    assert_eq!(
        header(&buf, "content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(buf.contains("retry: 2000"), "{buf}");
    assert!(first[0]["engine"]["connections"].is_u64(), "{}", first[0]);
    let t0 = first[0]["ts_ms"].as_u64().expect("ts_ms");

    let mut client = server.connect(&token("sse")).await;
    assert!(client.sync().await.is_empty());
    let two = read_events(&mut s, &mut buf, 3).await;
    let last = &two[two.len() - 1];
    let t2 = last["ts_ms"].as_u64().expect("ts_ms");
    assert!(t2 >= t0 + 1500, "snapshots about a second apart: {t0} {t2}");
    assert_eq!(last["server"]["ws_open"], 1, "{last}");
    client.close().await;

    // An open stream does not hold the shutdown up, and it ends.
    let began = Instant::now();
    server.shutdown().await.expect("clean shutdown");
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest))
        .await
        .expect("the stream ends after shutdown")
        .expect("read");
}
