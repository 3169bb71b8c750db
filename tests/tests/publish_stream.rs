//! `POST /api/v1/publish/stream`: NDJSON lines in, one receipt per line out, while the body
//! is still being written; bad and oversize lines answered alone, sustained abuse closes the
//! stream, the API key is checked, `?receipts=errors`, slow chunked bodies, a client that
//! stops reading receipts stops the server reading, and shutdown ends with a final line.

use std::time::Duration;

use agentcast_tests::{API_KEY, TestServer, WAIT, open_stream, open_stream_on, token};
use serde_json::{Value, json};

const PATH: &str = "/api/v1/publish/stream";

fn delta(user: &str, i: usize) -> String {
    let mut s = json!({"user_id": user, "type": "message_delta", "run_id": "r1",
        "data": {"message_id": "m1", "delta": format!("tok{i} ")}})
    .to_string();
    s.push('\n');
    s
}

async fn stats(server: &TestServer) -> Value {
    let (_, b) = server.http("GET", "/api/v1/stats", None, b"").await;
    serde_json::from_str(&b).expect("stats JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_delivered_in_order_with_one_receipt_per_line() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u1")).await;
    let body: String = (1..=5).map(|i| delta("u1", i)).collect();
    let (mut w, mut r) = open_stream(server.addr, Some(API_KEY), PATH, body.as_bytes()).await;
    assert_eq!(r.status().await, 200);
    let mut seqs = Vec::new();
    for line in 1..=5u64 {
        let receipt = r.expect_line().await;
        assert_eq!(receipt["line"], line, "{receipt}");
        assert_eq!(receipt["connections"], 1, "{receipt}");
        seqs.push(receipt["seq"].as_u64().expect("seq"));
    }
    assert!(seqs.windows(2).all(|p| p[1] > p[0]), "{seqs:?}");
    for (i, seq) in seqs.iter().enumerate() {
        let ev = c.next_json().await;
        assert_eq!(ev["type"], "message_delta");
        assert_eq!(ev["seq"], *seq);
        assert_eq!(ev["data"]["delta"], format!("tok{} ", i + 1));
    }
    w.finish().await;
    let end = r.expect_line().await;
    assert_eq!(
        end,
        json!({"end": "eof", "last_line": 5, "published": 5, "failed": 0})
    );
    assert_eq!(
        r.line().await,
        None,
        "the response ends after the final line"
    );
    let s = stats(&server).await;
    assert_eq!(s["server"]["publish_streams"], 1);
    assert_eq!(s["server"]["publish_stream_lines"], 5);
    assert_eq!(s["server"]["publish_stream_published"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_get_error_receipts_and_later_lines_still_work() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u1")).await;
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"user_id\":\"u1\",\"type\":\n"); // 1: malformed JSON
    body.extend_from_slice(b"\n   \n"); // 2, 3: empty, ignored
    body.extend_from_slice(b"{\"user_id\":\"u1\",\"type\":\"x\",\"data\":\"\xff\"}\n"); // 4: not UTF-8
    body.extend_from_slice(b"{\"user_id\":\"u1\",\"run_id\":\"r\"}\n"); // 5: no type
    body.extend_from_slice(delta("u1", 6).as_bytes()); // 6: fine
    let (mut w, mut r) = open_stream(server.addr, Some(API_KEY), PATH, &body).await;
    for (line, what) in [(1, "json"), (4, "utf8"), (5, "`type`")] {
        let e = r.expect_line().await;
        assert_eq!(e["line"], line, "{e}");
        assert_eq!(e["error"]["status"], 400, "{e}");
        let msg = e["error"]["message"].as_str().expect("message");
        assert!(
            msg.to_ascii_lowercase().contains(what),
            "line {line}: {msg}"
        );
    }
    let ok = r.expect_line().await;
    assert_eq!(ok["line"], 6, "{ok}");
    assert!(ok["seq"].is_u64(), "{ok}");
    let ev = c.next_json().await;
    assert_eq!(
        ev["data"]["delta"], "tok6 ",
        "only line 6 was published: {ev}"
    );
    w.finish().await;
    let end = r.expect_line().await;
    assert_eq!(end["end"], "eof");
    assert_eq!(
        (end["published"].clone(), end["failed"].clone()),
        (json!(1), json!(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_line_gets_413_and_the_stream_goes_on() {
    let server = TestServer::start_with(|c| c.limits.max_body_bytes = 1024).await;
    let mut c = server.connect(&token("u1")).await;
    let (mut w, mut r) =
        open_stream(server.addr, Some(API_KEY), PATH, delta("u1", 1).as_bytes()).await;
    assert_eq!(r.expect_line().await["line"], 1);
    // Line 2: 200 KiB in 50 chunks, then its newline with line 3 in the same chunk.
    w.chunk(b"{\"user_id\":\"u1\",\"type\":\"x\",\"data\":\"")
        .await;
    let pad = vec![b'a'; 4096];
    for _ in 0..50 {
        w.chunk(&pad).await;
    }
    // The 413 comes as soon as the line is known to be too long, before its end.
    let e = r.expect_line().await;
    assert_eq!(e["line"], 2, "{e}");
    assert_eq!(e["error"]["status"], 413, "{e}");
    let mut tail = b"\"}\n".to_vec();
    tail.extend_from_slice(delta("u1", 3).as_bytes());
    w.chunk(&tail).await;
    let ok = r.expect_line().await;
    assert_eq!(ok["line"], 3, "{ok}");
    assert_eq!(c.next_json().await["data"]["delta"], "tok1 ");
    assert_eq!(c.next_json().await["data"]["delta"], "tok3 ");
    w.finish().await;
    assert_eq!(r.expect_line().await["end"], "eof");
    assert_eq!(stats(&server).await["server"]["publish_too_large"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_bad_lines_close_the_stream() {
    let server = TestServer::start_with(|c| c.limits.abuse_max_errors = 3).await;
    // Three bad, one good (resets the count), then bad ones until the stream closes.
    let mut body = "nope\n".repeat(3);
    body.push_str(&delta("u1", 4));
    body.push_str(&"nope\n".repeat(500));
    let (mut w, mut r) = open_stream(server.addr, Some(API_KEY), PATH, body.as_bytes()).await;
    let mut lines = Vec::new();
    while let Some(l) = r.line().await {
        lines.push(l);
    }
    let end = lines.pop().expect("a final line");
    assert_eq!(end["end"], "abuse", "{end}");
    assert_eq!(end["error"]["status"], 400, "{end}");
    assert_eq!(end["published"], 1, "{end}");
    // Lines 5, 6, 7 are the three allowed, 8 is one too many; lines already taken into the
    // window of in-flight publishes (64) are still answered, nothing after them is read.
    let last = end["last_line"].as_u64().expect("last_line");
    assert!((8..8 + 64).contains(&last), "{end}");
    let numbers: Vec<u64> = lines
        .iter()
        .map(|l| l["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(numbers, (1..=last).collect::<Vec<_>>());
    assert!(r.ended, "the response ended");
    let _ = w.try_chunk(b"nope\n").await;
    assert_eq!(
        stats(&server).await["server"]["publish_stream_abuse_closes"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_api_key_is_401() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u1")).await;
    for key in [None, Some("wrong"), Some("")] {
        let (_w, mut r) = open_stream(server.addr, key, PATH, delta("u1", 1).as_bytes()).await;
        assert_eq!(r.status().await, 401, "{key:?}");
        assert!(r.refusal_body().contains("API key"), "{}", r.refusal_body());
    }
    // The wrong content type is refused too, before anything is read.
    let (s, b) = server
        .http("POST", PATH, Some(API_KEY), delta("u1", 1).as_bytes())
        .await;
    assert_eq!(s, 415, "{b}");
    let (_w, mut r) = open_stream(
        server.addr,
        Some(API_KEY),
        &format!("{PATH}?receipts=some"),
        b"",
    )
    .await;
    assert_eq!(r.status().await, 400, "{}", r.refusal_body());
    c.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_errors_writes_only_error_receipts_and_a_summary() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u1")).await;
    let mut body: String = (1..=3).map(|i| delta("u1", i)).collect();
    body.push_str("{\"user_id\":\"u1\"}\n");
    body.push_str(&delta("u1", 5));
    let (mut w, mut r) = open_stream(
        server.addr,
        Some(API_KEY),
        &format!("{PATH}?receipts=errors"),
        body.as_bytes(),
    )
    .await;
    w.finish().await;
    let e = r.expect_line().await;
    assert_eq!(e["line"], 4, "{e}");
    assert_eq!(e["error"]["status"], 400, "{e}");
    let end = r.expect_line().await;
    assert_eq!(
        end,
        json!({"end": "eof", "last_line": 5, "published": 4, "failed": 1})
    );
    assert_eq!(r.line().await, None);
    let got: Vec<Value> = c.take(4).await;
    let deltas: Vec<&str> = got
        .iter()
        .map(|e| e["data"]["delta"].as_str().expect("delta"))
        .collect();
    assert_eq!(deltas, ["tok1 ", "tok2 ", "tok3 ", "tok5 "]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_chunked_body_is_answered_line_by_line_while_it_is_written() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u1")).await;
    let (mut w, mut r) = open_stream(server.addr, Some(API_KEY), PATH, b"").await;
    // Line 1 cut in three chunks, written apart.
    let one = delta("u1", 1);
    let (a, rest) = one.as_bytes().split_at(10);
    let (b, cc) = rest.split_at(20);
    for part in [a, b] {
        w.chunk(part).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            r.line_within(Duration::from_millis(50)).await,
            None,
            "no receipt for half a line"
        );
    }
    w.chunk(cc).await;
    // Full duplex: the receipt comes while the body is still open.
    assert_eq!(r.expect_line().await["line"], 1);
    // Lines 2..4 in one chunk, with line 5 starting in it.
    let mut many: String = (2..=4).map(|i| delta("u1", i)).collect();
    let five = delta("u1", 5);
    many.push_str(&five[..7]);
    w.chunk(many.as_bytes()).await;
    for line in 2..=4u64 {
        assert_eq!(r.expect_line().await["line"], line);
    }
    w.chunk(&five.as_bytes()[7..]).await;
    assert_eq!(r.expect_line().await["line"], 5);
    let deltas: Vec<String> = c
        .take(5)
        .await
        .iter()
        .map(|e| e["data"]["delta"].as_str().expect("delta").to_owned())
        .collect();
    assert_eq!(
        deltas,
        (1..=5).map(|i| format!("tok{i} ")).collect::<Vec<_>>()
    );
    // The last line needs no newline.
    w.chunk(delta("u1", 6).trim_end().as_bytes()).await;
    w.finish().await;
    assert_eq!(r.expect_line().await["line"], 6);
    assert_eq!(r.expect_line().await["end"], "eof");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_receipts_stops_the_server_reading_lines() {
    let server = TestServer::start().await;
    // A small receive buffer, so the receipts back up soon.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let s = sock.connect(server.addr).await.expect("connect");
    let (mut w, mut r) = open_stream_on(s, Some(API_KEY), PATH, b"").await;
    // Channel events with nobody subscribed: small lines, cheap to publish.
    let line = "{\"channel\":\"nobody\",\"type\":\"x\"}\n";
    let chunk = line.repeat(1000);
    // 400,000 lines: several times what the socket buffers and the receipt queue hold
    // (here the server stopped after about 73,000).
    const CHUNKS: usize = 400;
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        for _ in 0..CHUNKS {
            if w.try_chunk(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 1;
        }
        (w, sent)
    });
    // The server must stop taking lines: wait until the count holds still for a second.
    let mut last = u64::MAX;
    let mut still_since = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let read = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = stats(&server).await["server"]["publish_stream_lines"]
            .as_u64()
            .expect("count");
        if n != last {
            last = n;
            still_since = tokio::time::Instant::now();
        } else if still_since.elapsed() >= Duration::from_secs(1) {
            break n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never stopped reading"
        );
    };
    eprintln!("the server stopped reading after {read} lines");
    assert!(!writer.is_finished(), "the client's writes are blocked");
    assert!(
        read < (CHUNKS * 1000) as u64 / 2,
        "the server stopped after {read} lines, not after reading everything"
    );
    // Reading the receipts lets it go on: every line is answered, in order.
    let reading = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(l) = r.line().await {
            if l.get("end").is_some() {
                return (n, l);
            }
            n += 1;
            assert_eq!(l["line"], n, "{l}");
        }
        panic!("no final line after {n} receipts");
    });
    let (mut w, sent) = tokio::time::timeout(Duration::from_secs(120), writer)
        .await
        .expect("the writer finishes once receipts are read")
        .expect("writer task");
    assert_eq!(sent, CHUNKS);
    w.finish().await;
    let (n, end) = tokio::time::timeout(Duration::from_secs(120), reading)
        .await
        .expect("all receipts")
        .expect("reader task");
    assert_eq!(n, (CHUNKS * 1000) as u64);
    assert_eq!(end["end"], "eof", "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_stream_with_a_final_line_and_delivers_every_receipted_line() {
    let mut server = TestServer::start_with(|c| c.shutdown_grace_ms = 10_000).await;
    let mut c = server.connect(&token("u1")).await;
    let body: String = (1..=20).map(|i| delta("u1", i)).collect();
    let (mut w, mut r) = open_stream(server.addr, Some(API_KEY), PATH, body.as_bytes()).await;
    for line in 1..=20u64 {
        assert_eq!(r.expect_line().await["line"], line);
    }
    // The body stays open: the shutdown must end the stream itself.
    let stop = tokio::spawn(async move {
        server.shutdown().await.expect("clean shutdown");
    });
    let end = r.expect_line().await;
    assert_eq!(end["end"], "shutdown", "{end}");
    assert_eq!(end["error"]["status"], 503, "{end}");
    assert_eq!(end["last_line"], 20, "{end}");
    assert_eq!(r.line().await, None);
    let _ = w.try_chunk(delta("u1", 21).as_bytes()).await;
    let deltas: Vec<String> = c
        .take(20)
        .await
        .iter()
        .map(|e| e["data"]["delta"].as_str().expect("delta").to_owned())
        .collect();
    assert_eq!(
        deltas,
        (1..=20).map(|i| format!("tok{i} ")).collect::<Vec<_>>()
    );
    assert_eq!(c.closed().await, Some(1001));
    tokio::time::timeout(WAIT * 3, stop)
        .await
        .expect("run returns")
        .expect("shutdown task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_hold_across_lines_of_a_stream() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("u1")).await;
    let keyed = |data: &str| {
        let mut s =
            json!({"user_id": "u1", "type": "x", "idempotency_key": "k1", "data": {"d": data}})
                .to_string();
        s.push('\n');
        s
    };
    let body = [keyed("a"), delta("u1", 2), keyed("a"), keyed("b")].concat();
    let (mut w, mut r) = open_stream(server.addr, Some(API_KEY), PATH, body.as_bytes()).await;
    w.finish().await;
    let first = r.expect_line().await;
    let second = r.expect_line().await;
    let replay = r.expect_line().await;
    let conflict = r.expect_line().await;
    assert_eq!(first["line"], 1);
    assert!(
        second["seq"].as_u64() > first["seq"].as_u64(),
        "{first} {second}"
    );
    assert_eq!(replay["line"], 3);
    assert_eq!(
        replay["seq"], first["seq"],
        "the first receipt again: {replay}"
    );
    assert_eq!(conflict["line"], 4);
    assert_eq!(conflict["error"]["status"], 409, "{conflict}");
    assert_eq!(r.expect_line().await["end"], "eof");
    // Delivered once each: line 1, then line 2, and nothing else.
    assert_eq!(c.next_json().await["data"]["d"], "a");
    assert_eq!(c.next_json().await["data"]["delta"], "tok2 ");
    c.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_shard_answers_its_lines_503_and_the_stream_goes_on() {
    // One shard with room for 4 queued publishes, stalled: the first 4 lines queue, the
    // others are refused at once. 503s are not the publisher's fault: with an abuse limit of
    // 2 the 6 refusals in a row do not close the stream.
    let server = TestServer::start_with(|cfg| {
        cfg.shards = Some(1);
        cfg.command_queue_capacity = 4;
        cfg.health.fault_injection = true;
        cfg.health.canary = false;
        cfg.limits.abuse_max_errors = 2;
    })
    .await;
    let (status, body) = server
        .http(
            "POST",
            "/api/v1/debug/fault",
            Some(API_KEY),
            json!({"shard": 0, "fault": "stall", "ms": 1000})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let body: String = (1..=10).map(|i| delta("u1", i)).collect();
    let (mut w, mut r) = open_stream(server.addr, Some(API_KEY), PATH, body.as_bytes()).await;
    let mut ok = 0;
    for line in 1..=10u64 {
        let l = r.expect_line().await;
        assert_eq!(l["line"], line, "{l}");
        if l["seq"].is_u64() {
            ok += 1;
        } else {
            assert_eq!(l["error"]["status"], 503, "{l}");
            let msg = l["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains("overloaded"), "{l}");
        }
    }
    assert_eq!(ok, 4, "exactly the queue's room was published");
    // The stall is over: the stream still publishes.
    w.chunk(delta("u1", 11).as_bytes()).await;
    let l = r.expect_line().await;
    assert_eq!(l["line"], 11, "{l}");
    assert!(l["seq"].is_u64(), "{l}");
    w.finish().await;
    let end = r.expect_line().await;
    assert_eq!(
        end,
        json!({"end": "eof", "last_line": 11, "published": 5, "failed": 6})
    );
}
