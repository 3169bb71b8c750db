//! Enrichment end to end: events published over the HTTP API reach a real WebSocket client
//! with the engine's `meta` member, and with the publisher's `data` exactly as sent.

use std::time::Duration;

use agentcast_tests::{API_KEY, TestServer, token};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The next text message, raw, skipping the welcome and pings.
async fn next_text(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(t) = msg {
            let t = t.to_string();
            let v: Value = serde_json::from_str(&t).expect("server sent JSON");
            if v["type"] != "welcome" {
                return t;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enriched_run_arrives_with_meta_and_the_publishers_data_intact() {
    let server = TestServer::start().await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("token={}", token("alice"))))
            .await
            .expect("ws connects");
    let mut publish = async |body: String| {
        let (status, reply) = server
            .http("POST", "/api/v1/publish", Some(API_KEY), body.as_bytes())
            .await;
        assert_eq!(status, 200, "{reply}");
        next_text(&mut ws).await
    };

    let started = publish(
        r#"{"user_id":"alice","type":"agent_started","run_id":"r1","data":{"expected_ms":60000}}"#
            .into(),
    )
    .await;
    let v: Value = serde_json::from_str(&started).unwrap();
    assert_eq!(v["meta"], json!({"elapsed_ms": 0}));

    // Unusual spacing, number spellings and escapes: kept byte for byte.
    let data = r#"{ "tool" : "web_search", "input": {"q":"caf\u00e9", "n": 1.50e0 } }"#;
    let text = publish(format!(
        r#"{{"user_id":"alice","type":"tool_executing","run_id":"r1","data":{data}}}"#
    ))
    .await;
    assert!(text.ends_with(&format!(r#","data":{data}}}"#)), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["meta"]["category"], "search");
    assert_eq!(v["meta"]["purpose"], "Searching the web");
    assert!(v["meta"]["elapsed_ms"].is_u64());

    let text = publish(
        r#"{"user_id":"alice","type":"tool_completed","run_id":"r1","data":{"tool":"web_search"}}"#
            .into(),
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["meta"]["duration_ms"].is_u64(), "{text}");

    let text = publish(r#"{"user_id":"alice","type":"agent_thinking","run_id":"r1","data":{"step":1,"total_steps":4}}"#.into()).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["meta"]["progress"],
        json!({"percent": 25, "step": 1, "total": 4})
    );
    assert_eq!(v["meta"]["urgency"], "low");

    let text = publish(r#"{"user_id":"alice","type":"agent_error","run_id":"r1","data":{"code":"RATE_LIMIT","message":"429"}}"#.into()).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"], json!({"code": "RATE_LIMIT", "message": "429"}));
    assert_eq!(v["meta"]["severity"], "medium");
    assert_eq!(v["meta"]["message"], "The agent reached a usage limit.");
    assert_eq!(
        v["meta"]["recovery_suggestions"][0],
        "Wait a minute and try again"
    );

    let text =
        publish(r#"{"user_id":"alice","type":"agent_completed","run_id":"r1","data":{}}"#.into())
            .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["meta"].get("lifecycle").is_none(), "{text}");

    // After completion: still delivered, flagged.
    let text =
        publish(r#"{"user_id":"alice","type":"agent_thinking","run_id":"r1","data":{}}"#.into())
            .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["meta"]["lifecycle"], "after_end");
    assert_eq!(v["type"], "agent_thinking");
}
