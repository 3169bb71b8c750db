//! What a token must be beyond a valid signature: no `crit` header, a lifetime within
//! `jwt_max_lifetime_secs`, channel patterns that end at a `:` separator; and the server
//! refuses to start with an HS256 secret shorter than 32 bytes.

use agentcast_server::{Config, ServerError};
use agentcast_tests::{SECRET, TestServer, now, sign_hs256, token, token_with};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

async fn assert_401(server: &TestServer, token: &str, reason: &str) {
    let (status, body) = server.refused(&format!("token={token}")).await;
    assert_eq!(status, 401, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(reason), "expected `{reason}` in `{msg}`");
}

fn sign_with_header(header: &Header, claims: &Value) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(SECRET.as_bytes()))
        .expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_crit_header_is_refused_with_401() {
    let server = TestServer::start().await;
    let claims = json!({"sub": "c", "exp": now() + 600});
    let mut h = Header::new(Algorithm::HS256);
    h.crit = Some(vec!["exp".into()]);
    assert_401(&server, &sign_with_header(&h, &claims), "crit").await;
    // The same token without `crit` is accepted.
    server
        .connect(&sign_with_header(&Header::new(Algorithm::HS256), &claims))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_living_longer_than_the_maximum_is_refused() {
    let day = 24 * 3600;
    let server = TestServer::start().await;
    // Default maximum: 7 days, counted from `iat`, or from now without `iat`.
    let t = sign_hs256(
        &json!({"sub": "l", "iat": now(), "exp": now() + 8 * day}),
        SECRET,
    );
    assert_401(&server, &t, "lifetime exceeds the maximum of 604800").await;
    let t = sign_hs256(&json!({"sub": "l", "exp": now() + 8 * day}), SECRET);
    assert_401(&server, &t, "lifetime").await;
    // An `iat` in the future does not shorten the lifetime.
    let t = sign_hs256(
        &json!({"sub": "l", "iat": now() + 7 * day, "exp": now() + 8 * day}),
        SECRET,
    );
    assert_401(&server, &t, "lifetime").await;
    // An old `iat` counts: issued 6 days ago, valid 2 more days = 8 days.
    let t = sign_hs256(
        &json!({"sub": "l", "iat": now() - 6 * day, "exp": now() + 2 * day}),
        SECRET,
    );
    assert_401(&server, &t, "lifetime").await;
    let t = sign_hs256(
        &json!({"sub": "l", "iat": now(), "exp": now() + 6 * day}),
        SECRET,
    );
    server.connect(&t).await;

    // A configured maximum.
    let server = TestServer::start_with(|c| c.jwt_max_lifetime_secs = 60).await;
    assert_401(&server, &token("l"), "maximum of 60 seconds").await;
    let t = sign_hs256(&json!({"sub": "l", "exp": now() + 50}), SECRET);
    server.connect(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_patterns_must_end_at_a_separator() {
    let server = TestServer::start().await;
    // `team*` would grant `teams:admin` as a plain prefix: the token is refused instead.
    let t = token_with("g", json!({"channels": ["team*"]}));
    assert_401(&server, &t, "invalid channel pattern `team*`").await;
    let t = token_with("g", json!({"channels": ["job:*", "news"]}));
    let mut c = server.connect(&t).await;
    for ch in ["job:1", "news", "jobs", "news:x"] {
        c.send_json(&json!({"type": "subscribe", "channel": ch}))
            .await;
    }
    let replies = c.sync().await;
    let refused: Vec<_> = replies
        .iter()
        .filter(|m| m["code"] == "forbidden")
        .map(|m| m["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(refused.len(), 2, "{replies:?}");
    assert!(refused[0].contains("`jobs`") && refused[1].contains("`news:x`"));
    // `*` alone still grants every channel.
    let mut all = server
        .connect(&token_with("g", json!({"channels": ["*"]})))
        .await;
    all.send_json(&json!({"type": "subscribe", "channel": "teams:admin"}))
        .await;
    assert!(all.sync().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_an_hs256_secret_shorter_than_32_bytes() {
    let mut server = TestServer::start_with(|c| c.jwt_secret = Some("x".repeat(31))).await;
    match server.shutdown().await {
        Err(ServerError::Key(e)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("31 bytes") && msg.contains("at least 32"),
                "{msg}"
            );
        }
        other => panic!("server started with a 31-byte secret: {other:?}"),
    }
    // Config validation (the binary's path) refuses it too, with the setting named.
    let mut cfg = Config::default();
    cfg.jwt_secret = Some("short".into());
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("jwt_secret") && err.contains("at least 32"),
        "{err}"
    );
    // 32 bytes is enough.
    let server = TestServer::start_with(|c| c.jwt_secret = Some(SECRET[..32].into())).await;
    let t = sign_hs256(&json!({"sub": "s", "exp": now() + 60}), &SECRET[..32]);
    server.connect(&t).await;
}
