//! `docs/openapi.json` against a real server and the server's source: the server serves the
//! repository's document as OpenAPI 3.1 JSON; every operation in it, sent a representative
//! request (and its common refusals), answers a status the document lists for it, with a
//! body that validates against the documented schema (NDJSON line by line), the documented
//! content type and the documented constant headers; and every route the router has is in
//! the document. So the document cannot drift from the code in either direction.

use std::collections::BTreeSet;
use std::path::Path;

use agentcast_tests::schema::{resolve, validate};
use agentcast_tests::{API_KEY, TestServer, WAIT, token, token_with};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn repo_doc() -> Value {
    serde_json::from_str(&read("docs/openapi.json")).expect("docs/openapi.json is JSON")
}

/// One request of the table below.
struct Case {
    method: &'static str,
    /// Path and query.
    target: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// The status this request must get (so each case is known to exercise what it says).
    expect: u16,
    /// Read only the response head (event streams, upgrades: the body never ends).
    head_only: bool,
}

fn case(method: &'static str, target: &str, expect: u16) -> Case {
    Case {
        method,
        target: target.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        expect,
        head_only: false,
    }
}

impl Case {
    fn bearer(mut self, credential: &str) -> Case {
        self.headers
            .push(("Authorization", format!("Bearer {credential}")));
        self
    }
    fn header(mut self, name: &'static str, value: &str) -> Case {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn json(self, v: &Value) -> Case {
        self.raw_body("application/json", v.to_string().as_bytes())
    }
    fn raw_body(mut self, content_type: &str, body: &[u8]) -> Case {
        self.headers.push(("Content-Type", content_type.to_owned()));
        self.body = body.to_vec();
        self
    }
    fn head_only(mut self) -> Case {
        self.head_only = true;
        self
    }
}

/// A response: status, headers (names lowercased), body (de-chunked).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `c` on a fresh connection (`Connection: close`) and reads the answer.
async fn send(server: &TestServer, c: &Case) -> Answer {
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        c.method, c.target, server.addr
    );
    for (k, v) in &c.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if c.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", c.body.len()));
    }
    // `close` unless the case names its own (an upgrade's `Connection: Upgrade`).
    if !c
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("write head");
    // A refused request may be answered before its body is read: ignore write errors.
    let _ = s.write_all(&c.body).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if c.head_only && raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "{} {}: no complete answer within {WAIT:?}",
                c.method, c.target
            ),
        }
    }
    parse(&raw, c)
}

fn parse(raw: &[u8], c: &Case) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{} {}: no response head", c.method, c.target));
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{} {}: bad status line", c.method, c.target));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked && !c.head_only {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// The payload of a complete chunked body.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            panic!("truncated chunked body");
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// `value`, or what its `$ref` points to.
fn deref<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r).unwrap_or_else(|| panic!("unresolved {r}")),
        None => value,
    }
}

/// Checks one answer against the document: a listed status, the listed content type, the
/// body against its schema, listed constant headers. `Err` says what does not match.
fn conforms(doc: &Value, c: &Case, a: &Answer) -> Result<(), String> {
    let path = c.target.split('?').next().unwrap_or_default();
    let op = &doc["paths"][path][c.method.to_ascii_lowercase()];
    let listed = op["responses"]
        .get(a.status.to_string())
        .ok_or_else(|| format!("status {} is not documented", a.status))?;
    let response = deref(doc, listed);
    for (name, h) in response["headers"].as_object().into_iter().flatten() {
        if let Some(want) = h["schema"]["const"].as_str() {
            let got = a.header(&name.to_ascii_lowercase());
            if got != Some(want) {
                return Err(format!("header {name} is {got:?}, documented {want:?}"));
            }
        }
    }
    let Some(content) = response["content"].as_object() else {
        return match a.body.is_empty() || c.head_only {
            true => Ok(()),
            false => Err("a body where the document lists none".to_owned()),
        };
    };
    let ct = a.header("content-type").unwrap_or_default();
    let media = ct.split(';').next().unwrap_or_default().trim();
    let Some(m) = content.get(media) else {
        return Err(format!(
            "content type {ct:?} is not one of {:?}",
            content.keys()
        ));
    };
    if c.head_only {
        return Ok(());
    }
    let text = String::from_utf8(a.body.clone()).map_err(|_| "body is not UTF-8".to_owned())?;
    match media {
        "application/json" => {
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
            validate(doc, &m["schema"], &v)
        }
        "application/x-ndjson" => {
            let item = &m["schema"]["x-ndjson-item"];
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.is_empty() {
                return Err("an NDJSON body without lines".to_owned());
            }
            for line in lines {
                let v: Value =
                    serde_json::from_str(line).map_err(|e| format!("{line}: not JSON: {e}"))?;
                validate(doc, item, &v).map_err(|e| format!("{line}: {e}"))?;
            }
            Ok(())
        }
        _ if text.is_empty() => Err("an empty body".to_owned()),
        _ => Ok(()),
    }
}

/// Representative requests: for every operation a success and the refusals a client meets.
fn cases() -> Vec<Case> {
    let user = json!({"user_id": "openapi-u", "type": "agent_started", "run_id": "r1", "data": {"goal": "g"}});
    let channel = json!({"channel": "job:1", "type": "progress", "data": {"pct": 1}});
    let keyed = |data: Value| json!({"user_id": "openapi-u", "type": "note", "idempotency_key": "k1", "data": data});
    let lines = format!("{user}\n\n{{\"user_id\":\n{channel}\n").into_bytes();
    // A refused upgrade is an ordinary answer: `close` lets the read end with it.
    let ws = |c: Case, connection: &str| {
        c.header("Upgrade", "websocket")
            .header("Connection", connection)
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
    };
    let alice = token("openapi-alice");
    vec![
        case("POST", "/api/v1/publish", 200)
            .bearer(API_KEY)
            .json(&user),
        case("POST", "/api/v1/publish", 200)
            .bearer(API_KEY)
            .json(&channel),
        case("POST", "/api/v1/publish", 401).json(&user),
        case("POST", "/api/v1/publish", 400)
            .bearer(API_KEY)
            .json(&json!({"type": "x"})),
        case("POST", "/api/v1/publish", 400)
            .bearer(API_KEY)
            .raw_body("application/json", b"{"),
        case("POST", "/api/v1/publish", 413)
            .bearer(API_KEY)
            .json(&json!({"pad": "x".repeat(2048)})),
        case("POST", "/api/v1/publish", 200)
            .bearer(API_KEY)
            .json(&keyed(json!(1))),
        case("POST", "/api/v1/publish", 409)
            .bearer(API_KEY)
            .json(&keyed(json!(2))),
        case("POST", "/api/v1/publish/batch", 200)
            .bearer(API_KEY)
            .json(&json!([user, {"type": "x"}, channel])),
        case("POST", "/api/v1/publish/batch", 401).json(&json!([user])),
        case("POST", "/api/v1/publish/batch", 400)
            .bearer(API_KEY)
            .json(&json!({"not": "an array"})),
        case("POST", "/api/v1/publish/batch", 413)
            .bearer(API_KEY)
            .json(&json!([user, user, user, user])),
        case("POST", "/api/v1/publish/stream", 200)
            .bearer(API_KEY)
            .raw_body("application/x-ndjson", &lines),
        case("POST", "/api/v1/publish/stream?receipts=errors", 200)
            .bearer(API_KEY)
            .raw_body("application/x-ndjson", &lines),
        case("POST", "/api/v1/publish/stream", 401).raw_body("application/x-ndjson", &lines),
        case("POST", "/api/v1/publish/stream", 415)
            .bearer(API_KEY)
            .json(&user),
        case("POST", "/api/v1/publish/stream?receipts=some", 400)
            .bearer(API_KEY)
            .raw_body("application/x-ndjson", &lines),
        case("POST", "/api/v1/ack", 200)
            .bearer(&alice)
            .json(&json!({"seq": 5})),
        case("POST", "/api/v1/ack", 401).json(&json!({"seq": 5})),
        case("POST", "/api/v1/ack", 401)
            .bearer(API_KEY)
            .json(&json!({"seq": 5})),
        case("POST", "/api/v1/ack", 400)
            .bearer(&alice)
            .json(&json!({"seq": -1})),
        case("POST", "/api/v1/ack", 413)
            .bearer(&alice)
            .json(&json!({"seq": 1, "pad": "x".repeat(2048)})),
        case("GET", "/sse?channels=job:1", 200)
            .bearer(&token_with("openapi-s", json!({"channels": ["job:*"]})))
            .head_only(),
        case("GET", &format!("/sse?token={alice}&last_seq=0"), 200).head_only(),
        case("GET", "/sse", 401),
        case("GET", "/sse?channels=admin", 403).bearer(&alice),
        case("GET", "/sse?last_seq=x", 400).bearer(&alice),
        case("GET", "/sse", 400)
            .bearer(&alice)
            .header("Last-Event-ID", "-1"),
        ws(case("GET", &format!("/ws?token={alice}"), 101), "Upgrade")
            .header("Sec-WebSocket-Version", "13")
            .head_only(),
        ws(case("GET", "/ws", 401), "Upgrade, close").header("Sec-WebSocket-Version", "13"),
        ws(case("GET", "/ws", 426), "Upgrade, close").header("Sec-WebSocket-Version", "8"),
        case("GET", "/ws", 400).bearer(&alice),
        case("GET", "/healthz", 200),
        case("GET", "/readyz", 200),
        case("GET", "/metrics", 200),
        case("GET", "/api/v1/stats", 200),
        case("GET", "/api/v1/stats/stream", 200).head_only(),
        case("GET", "/api/v1/openapi.json", 200),
        case("POST", "/api/v1/debug/fault", 200)
            .bearer(API_KEY)
            .json(&json!({"shard": 0, "fault": "stall", "ms": 1})),
        case("POST", "/api/v1/debug/fault", 401).json(&json!({"shard": 0, "fault": "stall"})),
        case("POST", "/api/v1/debug/fault", 400)
            .bearer(API_KEY)
            .json(&json!({"fault": "stall"})),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_the_repository_document_as_openapi_3_1_json() {
    let server = TestServer::start().await;
    let c = case("GET", "/api/v1/openapi.json", 200);
    let a = send(&server, &c).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let served: Value = serde_json::from_slice(&a.body).expect("the served document is JSON");
    assert_eq!(
        served,
        repo_doc(),
        "the binary serves another document than docs/openapi.json"
    );
    assert!(
        served["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        served["openapi"]
    );
    for member in ["title", "version"] {
        assert!(
            served["info"][member].is_string(),
            "info.{member} is required"
        );
    }
    // Every `$ref` resolves, every operation has responses.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                o.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&served, &mut all);
    assert!(all.len() > 20, "too few $refs found: {all:?}");
    for r in all {
        assert!(resolve(&served, r).is_some(), "{r} does not resolve");
    }
    for (path, item) in served["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
        }
    }
    // Revalidation, as for the web assets.
    let etag = a.header("etag").expect("an ETag").to_owned();
    let again = send(&server, &c.header("If-None-Match", &etag)).await;
    assert_eq!(again.status, 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let doc = repo_doc();
    // Small limits so 413 is cheap to reach; fault injection on so its route exists.
    let server = TestServer::start_with(|cfg| {
        cfg.limits.max_body_bytes = 1024;
        cfg.limits.max_batch_items = 3;
        cfg.health.fault_injection = true;
    })
    .await;
    let mut answered = BTreeSet::new();
    let mut failures = Vec::new();
    for c in cases() {
        let a = send(&server, &c).await;
        let shown = String::from_utf8_lossy(&a.body[..a.body.len().min(300)]).into_owned();
        if a.status != c.expect {
            failures.push(format!(
                "{} {}: {} (not {}): {shown}",
                c.method, c.target, a.status, c.expect
            ));
            continue;
        }
        if let Err(e) = conforms(&doc, &c, &a) {
            failures.push(format!(
                "{} {} → {}: {e}: {shown}",
                c.method, c.target, a.status
            ));
        }
        if (200..300).contains(&a.status) || a.status == 101 {
            let path = c.target.split('?').next().unwrap_or_default().to_owned();
            answered.insert((c.method.to_ascii_lowercase(), path));
        }
    }
    assert!(
        failures.is_empty(),
        "answers that do not match docs/openapi.json:\n{}",
        failures.join("\n")
    );
    // Every documented operation was exercised to success, so none is left unchecked.
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let unchecked: Vec<_> = documented.difference(&answered).collect();
    assert!(
        unchecked.is_empty(),
        "documented operations without a successful case: {unchecked:?}"
    );
    // The check can fail: an undocumented status is caught.
    let wrong = case("GET", "/healthz", 200);
    let mut a = send(&server, &wrong).await;
    a.status = 418;
    assert!(conforms(&doc, &wrong, &a).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refusal_is_documented() {
    let doc = repo_doc();
    let server = TestServer::start_with(|cfg| cfg.tiers.free.connections_per_user = 1).await;
    let t = token("openapi-limited");
    // The first stream holds the user's only slot while the second is refused.
    let mut first = TcpStream::connect(server.addr).await.expect("connect");
    let req = format!("GET /sse?token={t} HTTP/1.1\r\nHost: x\r\n\r\n");
    first.write_all(req.as_bytes()).await.expect("write");
    let mut head = [0u8; 12];
    first.read_exact(&mut head).await.expect("read");
    assert_eq!(&head, b"HTTP/1.1 200");
    let c = case("GET", &format!("/sse?token={t}"), 429);
    let a = send(&server, &c).await;
    assert_eq!(a.status, 429);
    conforms(&doc, &c, &a).expect("429 as documented");
}

#[test]
fn every_route_the_router_has_is_in_the_document() {
    let doc = repo_doc();
    let src = read("server/src/http/mod.rs");
    let router = src
        .split("pub(crate) async fn route")
        .nth(1)
        .expect("the router");
    let mut routed = BTreeSet::new();
    // `(&Method::GET, "/path")` arms, and `(_, "/ws")` arms (any method: documented as GET,
    // the upgrade and the event stream answer 405 to the others).
    for part in router.split("(&Method::").skip(1) {
        let Some((method, rest)) = part.split_once(", \"") else {
            continue;
        };
        if !method.chars().all(|c| c.is_ascii_uppercase()) {
            continue;
        }
        if let Some((path, _)) = rest.split_once('"') {
            routed.insert((method.to_ascii_lowercase(), path.to_owned()));
        }
    }
    for part in router.split("(_, \"").skip(1) {
        if let Some((path, rest)) = part.split_once('"') {
            if rest.starts_with(") =>") {
                routed.insert(("get".to_owned(), path.to_owned()));
            }
        }
    }
    assert!(
        routed.len() >= 12,
        "found too few routes in the router: {routed:?}"
    );
    let missing: Vec<_> = routed
        .iter()
        .filter(|(m, p)| doc["paths"][p.as_str()].get(m.as_str()).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "routes the server has but docs/openapi.json lacks: {missing:?}"
    );
}
