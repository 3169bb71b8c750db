//! A session does not outlive its token: at `exp` + `jwt_leeway_secs` the server closes it with
//! 4001 `token expired`, after delivering every event published before; a session whose
//! token is still valid stays open and keeps receiving.

use std::time::{Duration, Instant};

use agentcast_tests::{SECRET, TestServer, WAIT, now, sign_hs256, token};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Reads until a close frame; returns the JSON messages before it and the close (code,
/// reason). Panics if nothing closes within `limit`.
async fn read_to_close(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    limit: Duration,
) -> (Vec<Value>, Option<(u16, String)>) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("no close within the limit");
        match next {
            Some(Ok(Message::Text(t))) => got.push(serde_json::from_str(&t).expect("JSON")),
            Some(Ok(Message::Close(f))) => {
                return (got, f.map(|f| (u16::from(f.code), f.reason.to_string())));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (got, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_closed_with_4001_when_its_token_expires() {
    let server = TestServer::start_with(|c| c.jwt_leeway_secs = 0).await;
    // `exp` has whole-second precision: the token expires 2 to 3 s from now.
    let exp = now() + 3;
    let short = sign_hs256(&json!({"sub": "brief", "exp": exp}), SECRET);
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(&format!("token={short}")))
        .await
        .expect("connect with a valid token");
    let mut lasting = server.connect(&token("lasting")).await;

    // Events published before `exp` arrive.
    let seq = server.publish_user("brief", json!({"n": 1})).await;
    server.publish_user("lasting", json!({"n": 1})).await;

    let (got, close) = read_to_close(&mut ws, Duration::from_secs(3) + WAIT).await;
    let closed_at = now();
    assert_eq!(got[0]["type"], "welcome", "{got:?}");
    assert!(
        got.iter().any(|m| m["seq"] == seq),
        "event before exp not delivered: {got:?}"
    );
    assert_eq!(close, Some((4001, "token expired".to_owned())), "{got:?}");
    // Not before `exp` (the wall clock's second may tick just after the timer fires).
    assert!(closed_at >= exp, "closed at {closed_at}, exp {exp}");

    let (_, metrics) = server.http("GET", "/metrics", None, b"").await;
    assert!(
        metrics.contains("agentcast_forced_closes_total{reason=\"token_expired\"} 1"),
        "{metrics}"
    );

    // The session with a valid token is untouched.
    assert_eq!(lasting.next_json().await["data"]["n"], 1);
    let seq2 = server.publish_user("lasting", json!({"n": 2})).await;
    assert_eq!(lasting.next_json().await["seq"], seq2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leeway_delays_the_expiry_close() {
    let server = TestServer::start_with(|c| c.jwt_leeway_secs = 2).await;
    let exp = now() + 2;
    let short = sign_hs256(&json!({"sub": "lee", "exp": exp}), SECRET);
    let started = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(&format!("token={short}")))
        .await
        .expect("connect");
    let (_, close) = read_to_close(&mut ws, Duration::from_secs(4) + WAIT).await;
    assert_eq!(close.map(|c| c.0), Some(4001));
    assert!(now() >= exp + 2, "closed before exp + leeway");
    assert!(started.elapsed() >= Duration::from_secs(2));
}
