//! `docs/protocol.md` against a real server and the server's source: every route its tables
//! list answers something other than 404, every route the server routes is listed, every
//! client message it lists is understood, every server message type it lists is sent, and
//! every error code it lists is one the server sends. So the contract in the repository
//! cannot silently drift from the code.

use std::collections::BTreeSet;
use std::path::Path;

use agentcast_tests::{TestServer, WAIT, token_with};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn doc() -> String {
    read("docs/protocol.md")
}

/// The section of `doc` under the heading `## title`, up to the next `## `.
fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let start = doc
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("docs/protocol.md has no `## {title}`"));
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The first cell of every table row, without its backticks: "| `X` | … |" → "X".
fn first_cells(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(cell, _)| cell.to_owned()))
        .collect()
}

/// Every `METHOD /path` listed in a table of the doc.
fn documented_routes(doc: &str) -> BTreeSet<(String, String)> {
    first_cells(doc)
        .into_iter()
        .filter_map(|c| {
            let (m, p) = c.split_once(' ')?;
            (["GET", "POST", "PUT", "DELETE"].contains(&m) && p.starts_with('/'))
                .then(|| (m.to_owned(), p.to_owned()))
        })
        .collect()
}

/// The status code of one request (reads only the status line, so streams are fine).
async fn status(server: &TestServer, method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let body = if method == "POST" { "{}" } else { "" };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut byte))
            .await
            .unwrap_or_else(|_| panic!("no answer to {method} {path}"))
            .expect("read");
        assert!(n > 0, "{method} {path}: closed before a status line");
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_exists_on_a_real_server() {
    let doc = doc();
    let routes = documented_routes(&doc);
    assert!(
        routes.len() >= 15,
        "too few routes found in docs/protocol.md: {routes:?}"
    );
    assert!(
        doc.contains("`GET /ws`"),
        "docs/protocol.md does not name `GET /ws`"
    );
    // Dev mode and fault injection on, so every optional route exists.
    let server = TestServer::start_with(|cfg| {
        cfg.dev_mode = true;
        cfg.health.fault_injection = true;
    })
    .await;
    for (method, path) in routes.iter().chain([&("GET".to_owned(), "/ws".to_owned())]) {
        let code = status(&server, method, path).await;
        assert_ne!(code, 404, "{method} {path} is documented but answers 404");
    }
    // And a path that is not documented does answer 404, so the check can fail.
    assert_eq!(status(&server, "GET", "/api/v1/not-a-route").await, 404);
}

#[test]
fn every_route_the_server_has_is_documented() {
    let routes = documented_routes(&doc());
    let mut routed = BTreeSet::new();
    // `(&Method::GET, "/path")` arms of the routers.
    for file in ["server/src/http/mod.rs", "server/src/http/dev.rs"] {
        let src = read(file);
        for part in src.split("(&Method::").skip(1) {
            let Some((method, rest)) = part.split_once(", \"") else {
                continue;
            };
            if !method.chars().all(|c| c.is_ascii_uppercase()) {
                continue;
            }
            let Some((path, _)) = rest.split_once('"') else {
                continue;
            };
            routed.insert((method.to_owned(), path.to_owned()));
        }
    }
    // Compiled-in assets: `"/path" => "file", "type";`.
    for line in read("server/src/http/assets.rs").lines() {
        if let Some((path, _)) = line
            .trim()
            .strip_prefix('"')
            .and_then(|l| l.split_once("\" => \""))
        {
            routed.insert(("GET".to_owned(), path.to_owned()));
        }
    }
    assert!(
        routed.len() >= 15,
        "found too few routes in the source: {routed:?}"
    );
    let missing: Vec<_> = routed.difference(&routes).collect();
    assert!(
        missing.is_empty(),
        "routes the server has but docs/protocol.md does not list: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_client_message_is_understood_and_server_types_are_sent() {
    let doc = doc();
    let messages: Vec<Value> = first_cells(section(&doc, "Client → server"))
        .into_iter()
        .filter(|c| c.starts_with('{'))
        .map(|c| {
            serde_json::from_str(&c.replace(":N", ":1"))
                .unwrap_or_else(|e| panic!("{e}: documented message {c}"))
        })
        .collect();
    let types: BTreeSet<&str> = messages.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(
        types,
        BTreeSet::from(["ack", "subscribe", "unsubscribe", "ping"]),
        "documented client messages: {messages:?}"
    );
    let server = TestServer::start().await;
    let channels: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["channel"].as_str())
        .collect();
    let mut client = server
        .connect(&token_with("doc-reader", json!({"channels": channels})))
        .await;
    let documented_server_types = first_cells(section(&doc, "Server → client"));
    assert!(documented_server_types.contains(&"welcome".to_owned()));
    assert_eq!(client.welcome["type"], "welcome");
    for m in &messages {
        client.send_json(m).await;
        if m["type"] == "ping" {
            let pong = client.next_json().await;
            assert_eq!(pong["type"], "pong", "{m} answered {pong}");
            assert!(documented_server_types.contains(&"pong".to_owned()));
        } else {
            let before = client.sync().await;
            assert!(before.is_empty(), "{m} answered {before:?}");
        }
    }
    // A message the doc does not list is an `error`, with a documented code.
    client.send_json(&json!({"type": "shout"})).await;
    let err = client.next_json().await;
    assert_eq!(err["type"], "error", "{err}");
    assert!(documented_server_types.contains(&"error".to_owned()));
    let codes = first_cells(section(&doc, "Server → client"));
    assert!(
        codes.contains(&err["code"].as_str().unwrap().to_owned()),
        "{err}"
    );
}

#[test]
fn every_documented_error_code_is_sent_by_the_server() {
    let doc = doc();
    let server_types = section(&doc, "Server → client");
    let codes: Vec<String> = first_cells(
        &server_types[server_types
            .find("Error codes")
            .expect("an Error codes table")..],
    )
    .into_iter()
    .collect();
    assert!(codes.len() >= 7, "{codes:?}");
    let session = read("server/src/ws/session.rs");
    for code in &codes {
        assert!(
            session.contains(&format!("\"{code}\"")),
            "error code `{code}` is documented but server/src/ws/session.rs never sends it"
        );
    }
}
