//! AG-UI streams in cluster mode (docs/ag-ui.md, "Join prelude" and "Resume"): a tab that
//! joins mid-run on a node that never held the user, without a seq, after the first tab
//! acknowledged everything, still starts with the run's `RUN_STARTED`, the text so far as one
//! merged `TEXT_MESSAGE_CONTENT` and the open tool call with its arguments merged, then gets
//! the live rest; and a resume with `last_seq` on a third node gets exactly the missed events,
//! in seq order. The test starts its own `redis-server` on a free port (never 6379).

use std::time::Duration;

use agentcast_tests::{RedisServer, TestServer, WAIT, cluster_node, token};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `?protocol=ag-ui` WebSocket: every frame is one AG-UI event.
struct AgUi(Ws);

impl AgUi {
    /// Connects with `query` (`protocol=ag-ui` is added) and reads the welcome.
    async fn connect(node: &TestServer, query: &str) -> AgUi {
        let url = node.ws_url(&format!("protocol=ag-ui&{query}"));
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect");
        let mut c = AgUi(ws);
        let w = c.next().await.expect("a welcome");
        assert_eq!(w["name"], "agentcast.welcome", "{w}");
        c
    }

    /// The next event, or `None` after `wait` of silence.
    async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(wait, self.0.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(&t).expect("AG-UI frames are JSON"));
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn next(&mut self) -> Option<Value> {
        self.next_within(WAIT).await
    }

    /// Exactly `n` events, then 300 ms of silence.
    async fn take(&mut self, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        while got.len() < n {
            got.push(self.next().await.expect("an event"));
        }
        let more = self.next_within(Duration::from_millis(300)).await;
        assert!(
            more.is_none(),
            "more than {n} events: {got:?} then {more:?}"
        );
        got
    }
}

fn ag(user: &str, run: Option<&str>, event: Value) -> Value {
    match run {
        Some(r) => json!({"user_id": user, "run_id": r, "ag_ui": event}),
        None => json!({"user_id": user, "ag_ui": event}),
    }
}

async fn publish(node: &TestServer, items: &[Value]) -> Vec<u64> {
    node.publish_batch(items)
        .await
        .iter()
        .map(|r| r["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {r}")))
        .collect()
}

/// The user's cluster-wide ack cursor, read from Redis behind the nodes' backs (a bulk
/// string reply, `$-1` while unset).
fn ack_cursor(redis: &RedisServer, user: &str) -> u64 {
    let reply = redis.command(&["HGET", &format!("ac:{{{user}}}:m"), "a"]);
    reply
        .lines()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_joining_mid_run_on_another_node_gets_the_prelude_and_a_resume_on_a_third_the_rest() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis, "a", |_| {}).await;
    let b = cluster_node(&redis, "b", |_| {}).await;
    let c = cluster_node(&redis, "c", |_| {}).await;
    let u = "tabs";
    let r = Some("r1");
    // The run so far, published through node a.
    let before = publish(
        &a,
        &[
            ag(
                u,
                None,
                json!({"type": "RUN_STARTED", "threadId": "t1", "runId": "r1"}),
            ),
            ag(
                u,
                r,
                json!({"type": "TEXT_MESSAGE_START", "messageId": "m1", "role": "assistant"}),
            ),
            ag(
                u,
                r,
                json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "Hel"}),
            ),
            ag(
                u,
                r,
                json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "lo, "}),
            ),
            ag(
                u,
                r,
                json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "world"}),
            ),
            ag(
                u,
                r,
                json!({"type": "TOOL_CALL_START", "toolCallId": "c1", "toolCallName": "search"}),
            ),
            ag(
                u,
                r,
                json!({"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": "{\"q\":"}),
            ),
            ag(
                u,
                r,
                json!({"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": "1}"}),
            ),
        ],
    )
    .await;
    let last = *before.last().unwrap();
    // The first tab, on node a, acknowledges everything so far.
    let mut first = a.connect(&token(u)).await;
    first.send_json(&json!({"type": "ack", "seq": last})).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while ack_cursor(&redis, u) < last {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ack never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second tab on node b, which never held this user, joins without a seq.
    let mut tab = AgUi::connect(&b, &format!("token={}", token(u))).await;
    let prelude = tab.take(5).await;
    assert_eq!(
        types(&prelude),
        [
            "RUN_STARTED",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS"
        ],
        "{prelude:?}"
    );
    assert_eq!(prelude[0]["runId"], "r1");
    assert_eq!(prelude[0]["seq"], before[0]);
    assert_eq!(prelude[2]["delta"], "Hello, world", "{}", prelude[2]);
    assert_eq!(prelude[2]["seq_from"], before[2], "{}", prelude[2]);
    assert_eq!(prelude[2]["seq"], before[4], "{}", prelude[2]);
    assert_eq!(prelude[4]["delta"], "{\"q\":1}", "{}", prelude[4]);
    assert_eq!(prelude[4]["seq"], last);
    // The rest of the run, published through node c, arrives live.
    let rest = publish(
        &c,
        &[
            ag(u, r, json!({"type": "TEXT_MESSAGE_END", "messageId": "m1"})),
            ag(u, r, json!({"type": "TOOL_CALL_END", "toolCallId": "c1"})),
            ag(
                u,
                None,
                json!({"type": "RUN_FINISHED", "threadId": "t1", "runId": "r1"}),
            ),
        ],
    )
    .await;
    let live = tab.take(3).await;
    assert_eq!(
        types(&live),
        ["TEXT_MESSAGE_END", "TOOL_CALL_END", "RUN_FINISHED"]
    );
    let seqs: Vec<u64> = live.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, rest);
    // A third tab resumes on node c after the message's end: exactly the two events after it.
    let mut resumed = AgUi::connect(&c, &format!("token={}&last_seq={}", token(u), rest[0])).await;
    let got = resumed.take(2).await;
    assert_eq!(types(&got), ["TOOL_CALL_END", "RUN_FINISHED"], "{got:?}");
    assert_eq!(got[0]["seq"], rest[1]);
    assert_eq!(got[1]["seq"], rest[2]);
    first.close().await;
}
