//! Streamed answers over real sockets: `message_delta` events are never dropped. A reader
//! that stalls during a fast stream gets the exact text (merged frames, counted), a resume in
//! the middle of a message gets exactly the rest, two tabs both get the whole text, and a
//! connection after `message_completed` gets the message as one merged delta.

use std::time::Duration;

use agentcast_tests::{Client, SseClient, SseItem, TestServer, token};
use serde_json::{Value, json};

fn delta(user: &str, msg: &str, text: &str) -> Value {
    json!({"user_id": user, "type": "message_delta", "run_id": "r1",
           "data": {"message_id": msg, "delta": text}})
}

fn message_event(user: &str, kind: &str, msg: &str) -> Value {
    json!({"user_id": user, "type": kind, "run_id": "r1",
           "data": {"message_id": msg, "role": "assistant"}})
}

/// The i-th token: varied, with characters JSON must escape.
fn token_text(i: usize) -> String {
    format!("t{i} \"é\"\\ {} ", "x".repeat(i % 7))
}

/// Publishes tokens `range` of message `msg` in batches; returns the last seq.
async fn publish_tokens(
    server: &TestServer,
    user: &str,
    msg: &str,
    range: std::ops::Range<usize>,
    pad: usize,
) -> u64 {
    let mut last = 0;
    let items: Vec<Value> = range
        .map(|i| delta(user, msg, &format!("{}{}", token_text(i), "p".repeat(pad))))
        .collect();
    for chunk in items.chunks(400) {
        for r in server.publish_batch(chunk).await {
            last = r["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("publish refused: {r}"));
        }
    }
    last
}

fn expected(range: std::ops::Range<usize>, pad: usize) -> String {
    range
        .map(|i| format!("{}{}", token_text(i), "p".repeat(pad)))
        .collect()
}

/// Reads frames until one covers `last_seq`; returns the reassembled text of `msg`, the
/// number of merged frames, and the last seq held.
async fn read_text(
    c: &mut Client,
    msg: &str,
    mut held: u64,
    last_seq: u64,
) -> (String, usize, u64) {
    let (mut text, mut merged) = (String::new(), 0);
    while held < last_seq {
        let v = c.next_json().await;
        let Some(seq) = v["seq"].as_u64() else {
            continue;
        };
        let from = v["seq_from"].as_u64().unwrap_or(seq);
        assert!(
            from > held,
            "frame {from}..={seq} overlaps what is held ({held})"
        );
        if v["type"] == "message_delta" && v["data"]["message_id"] == msg {
            if from < seq {
                merged += 1;
            }
            text.push_str(v["data"]["delta"].as_str().unwrap());
        }
        held = seq;
    }
    (text, merged, held)
}

async fn engine_stats(server: &TestServer) -> Value {
    let (_, s) = server.http("GET", "/api/v1/stats", None, b"").await;
    serde_json::from_str::<Value>(&s).unwrap()["engine"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_stalled_during_a_fast_stream_gets_the_exact_text() {
    let server = TestServer::start().await;
    let mut c = server.connect(&token("slow")).await;
    let held = c.welcome["last_seq"].as_u64().unwrap();
    // ~12 MB of deltas while the client reads nothing: far past the sockets' buffers and
    // the connection's ring, so the server must merge (or lose) deltas.
    let n = 12_000;
    let last = publish_tokens(&server, "slow", "m1", 0..n, 1_000).await;
    let stats = engine_stats(&server).await;
    let merged = stats["deltas_merged"].as_u64().unwrap();
    assert!(
        merged > 0,
        "no merge: the test did not overflow the ring ({stats})"
    );
    let (text, frames_merged, _) = read_text(&mut c, "m1", held, last).await;
    assert_eq!(text.len(), expected(0..n, 1_000).len());
    assert!(text == expected(0..n, 1_000), "text differs");
    assert!(frames_merged > 0);
    let stats = engine_stats(&server).await;
    assert_eq!(stats["dropped"]["normal"], 0, "{stats}");
    assert_eq!(stats["forced_closes"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_mid_message_gets_exactly_the_rest() {
    let server = TestServer::start().await;
    let t = token("resumer");
    let mut c = server.connect(&t).await;
    let held = c.welcome["last_seq"].as_u64().unwrap();
    let (s, _) = server
        .publish(&message_event("resumer", "message_started", "m1"))
        .await;
    assert_eq!(s, 200);
    let mid = publish_tokens(&server, "resumer", "m1", 0..50, 0).await;
    let (first, _, held) = read_text(&mut c, "m1", held, mid).await;
    c.close().await;
    // Published while the client is away, then live after it is back.
    let last = publish_tokens(&server, "resumer", "m1", 50..120, 0).await;
    let mut c = server
        .connect_query(&format!("token={t}&last_seq={held}"))
        .await
        .unwrap();
    let replay = c.next_json().await;
    assert_eq!(replay["type"], "message_delta");
    assert_eq!(replay["seq_from"].as_u64(), Some(held + 1), "{replay}");
    assert_eq!(replay["seq"].as_u64(), Some(last));
    let live_last = publish_tokens(&server, "resumer", "m1", 120..130, 0).await;
    let mut text = first;
    text.push_str(replay["data"]["delta"].as_str().unwrap());
    let (live, _, _) = read_text(&mut c, "m1", last, live_last).await;
    text.push_str(&live);
    assert_eq!(text, expected(0..130, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_of_one_user_both_get_the_whole_text() {
    let server = TestServer::start().await;
    let t = token("tabs");
    let mut a = server.connect(&t).await;
    let mut b = server.connect(&t).await;
    let held = a.welcome["last_seq"].as_u64().unwrap();
    let last = publish_tokens(&server, "tabs", "m1", 0..300, 10).await;
    let (ta, _, _) = read_text(&mut a, "m1", held, last).await;
    let (tb, _, _) = read_text(&mut b, "m1", held, last).await;
    assert_eq!(ta, expected(0..300, 10));
    assert_eq!(tb, ta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_message_completed_a_new_connection_gets_one_merged_delta() {
    let server = TestServer::start().await;
    let user = "later";
    for body in [message_event(user, "message_started", "m1")] {
        assert_eq!(server.publish(&body).await.0, 200);
    }
    let last = publish_tokens(&server, user, "m1", 0..200, 0).await;
    assert_eq!(
        server
            .publish(&message_event(user, "message_completed", "m1"))
            .await
            .0,
        200
    );
    let mut c = server.connect(&token(user)).await;
    let got = c.take(3).await;
    let types: Vec<&str> = got.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["message_started", "message_delta", "message_completed"]
    );
    assert_eq!(got[1]["seq"].as_u64(), Some(last));
    assert_eq!(got[1]["seq_from"].as_u64(), Some(last - 199));
    assert_eq!(got[1]["data"]["delta"], expected(0..200, 0).as_str());
    assert_eq!(got[1]["data"]["message_id"], "m1");
    c.expect_silence(Duration::from_millis(100)).await;
    let stats = engine_stats(&server).await;
    assert_eq!(stats["history_deltas_merged"], 199, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_events_are_validated() {
    let server = TestServer::start().await;
    let cases = [
        (
            json!({"user_id": "u", "type": "message_delta", "data": {"message_id": "m", "delta": "x"}}),
            "run_id",
        ),
        (
            json!({"user_id": "u", "type": "message_delta", "run_id": "r", "data": {"delta": "x"}}),
            "data.message_id",
        ),
        (
            json!({"user_id": "u", "type": "message_delta", "run_id": "r", "data": {"message_id": "m"}}),
            "data.delta",
        ),
        (
            json!({"user_id": "u", "type": "message_delta", "run_id": "r", "data": {"message_id": "m", "delta": 5}}),
            "data.delta",
        ),
        (
            json!({"user_id": "u", "type": "message_started", "run_id": "r", "data": {"message_id": 1}}),
            "data.message_id",
        ),
        (
            json!({"user_id": "u", "type": "message_started", "run_id": "r", "data": {"message_id": "m", "role": []}}),
            "data.role",
        ),
        (
            json!({"user_id": "u", "type": "message_completed", "run_id": "r", "data": "m"}),
            "data",
        ),
    ];
    for (body, field) in cases {
        let (status, v) = server.publish(&body).await;
        assert_eq!(status, 400, "{body} → {v}");
        assert!(
            v.to_string().contains(&format!("`{field}`")),
            "{body}: the error names `{field}`: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_reader_resumes_mid_message_with_last_event_id_and_gets_exactly_the_rest() {
    let server = TestServer::start().await;
    let t = token("sse-reader");
    let mut c = SseClient::open(&server, &format!("/sse?token={t}"), &[])
        .await
        .expect("200");
    assert_eq!(c.next().await, SseItem::Retry(2000));
    assert_eq!(c.next_json().await.1.as_deref(), Some("welcome"));
    let mid = publish_tokens(&server, "sse-reader", "m1", 0..40, 0).await;
    let mut text = String::new();
    let last_id = loop {
        let (id, event, v) = c.next_json().await;
        assert_eq!(event.as_deref(), Some("message_delta"));
        assert_eq!(id, Some(v["seq"].to_string()), "id: is the seq");
        text.push_str(v["data"]["delta"].as_str().unwrap());
        if v["seq"].as_u64() == Some(mid) {
            break id.unwrap();
        }
    };
    drop(c);
    let last = publish_tokens(&server, "sse-reader", "m1", 40..100, 0).await;
    // What `EventSource` sends on its reconnect: the last id it saw.
    let mut c = SseClient::open(
        &server,
        &format!("/sse?token={t}"),
        &[("Last-Event-ID", &last_id)],
    )
    .await
    .expect("200");
    assert_eq!(c.next().await, SseItem::Retry(2000));
    assert_eq!(c.next_json().await.1.as_deref(), Some("welcome"));
    let (id, event, v) = c.next_json().await;
    assert_eq!(event.as_deref(), Some("message_delta"));
    assert_eq!(
        id,
        Some(last.to_string()),
        "a merged delta's id is its last seq"
    );
    assert_eq!(v["seq_from"].as_u64(), Some(mid + 1), "{v}");
    text.push_str(v["data"]["delta"].as_str().unwrap());
    assert_eq!(text, expected(0..100, 0));
}
