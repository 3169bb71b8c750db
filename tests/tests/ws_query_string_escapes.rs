//! `?token=` and `?last_seq=` are percent-decoded (`%XX`, and `+` as a space); a malformed
//! escape answers 400 with a JSON error rather than passing a value the client did not mean.

use agentcast_tests::{TestServer, token};
use serde_json::json;

/// Every byte of `s` as `%XX`.
fn escape_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_tokens_and_last_seq_are_decoded() {
    let server = TestServer::start().await;
    let seqs = [
        server.publish_user("esc", json!({"n": 1})).await,
        server.publish_user("esc", json!({"n": 2})).await,
    ];
    let t = token("esc");
    let query = format!(
        "token={}&last_seq={}",
        escape_all(&t),
        escape_all(&seqs[0].to_string())
    );
    let mut c = server
        .connect_query(&query)
        .await
        .expect("escaped token accepted");
    assert_eq!(c.welcome["user_id"], "esc");
    // Resumed after the first seq: exactly the second event.
    let got = c.take(1).await;
    assert!(c.sync().await.is_empty());
    let replayed: Vec<_> = got.iter().map(|m| m["seq"].clone()).collect();
    assert_eq!(replayed, [json!(seqs[1])], "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_percent_escapes_answer_400() {
    let server = TestServer::start().await;
    let t = token("esc");
    for (query, name) in [
        (format!("token={t}%zz"), "token"),
        (format!("token={t}%4"), "token"),
        (format!("token={t}%"), "token"),
        (format!("token={t}%FF"), "token"),
        (format!("token={t}&last_seq=1%G0"), "last_seq"),
    ] {
        let (status, body) = server.refused(&query).await;
        assert_eq!(status, 400, "{query}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("`{name}`")) && msg.contains("percent-escape"),
            "{query}: {msg}"
        );
    }
}
