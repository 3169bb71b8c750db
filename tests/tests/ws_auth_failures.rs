//! Every token failure is refused with HTTP 401 and a JSON reason before the upgrade;
//! HS256, RS256 and ES256 tokens that are valid are accepted.

use agentcast_tests::{SECRET, TestServer, now, sign_hs256, token};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/keys");

fn key(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}/{name}")).expect("test key")
}

fn sign(alg: Algorithm, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

fn valid_claims() -> Value {
    json!({"sub": "u1", "exp": now() + 600})
}

async fn assert_401(server: &TestServer, token: &str, reason: &str) {
    let (status, body) = server.refused(&format!("token={token}")).await;
    assert_eq!(status, 401, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(reason), "expected `{reason}` in `{msg}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_failures_are_401_with_a_reason() {
    let server = TestServer::start().await;
    let (status, body) = server.refused("").await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("missing token"));
    assert_401(&server, "not-a-jwt", "malformed").await;
    assert_401(&server, "a.b.c", "malformed").await;
    let expired = sign_hs256(&json!({"sub": "u1", "exp": now() - 3600}), SECRET);
    assert_401(&server, &expired, "expired").await;
    let early = sign_hs256(
        &json!({"sub": "u1", "exp": now() + 3600, "nbf": now() + 600}),
        SECRET,
    );
    assert_401(&server, &early, "not yet valid").await;
    let wrong = sign_hs256(&valid_claims(), "another-secret");
    assert_401(&server, &wrong, "invalid signature").await;
    let no_exp = sign_hs256(&json!({"sub": "u1"}), SECRET);
    assert_401(&server, &no_exp, "missing claim `exp`").await;
    let no_sub = sign_hs256(&json!({"exp": now() + 60}), SECRET);
    assert_401(&server, &no_sub, "missing claim `sub`").await;
    let bad_tier = sign_hs256(
        &json!({"sub": "u1", "exp": now() + 60, "tier": "gold"}),
        SECRET,
    );
    assert_401(&server, &bad_tier, "tier").await;
    let huge = sign_hs256(
        &json!({"sub": "u1", "exp": now() + 60, "pad": "x".repeat(9000)}),
        SECRET,
    );
    assert_401(&server, &huge, "longer than").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_refused() {
    let server = TestServer::start().await;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&valid_claims())
    );
    assert_401(&server, &unsigned, "alg none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_header_is_accepted_like_the_query() {
    let server = TestServer::start().await;
    let mut req = server.ws_url("").into_client_request().unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", token("hdr")).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("bearer accepted");
    use futures_util::StreamExt;
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains(r#""user_id":"hdr""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_is_verified_and_hs256_confusion_is_refused() {
    let server = TestServer::start_with(|c| {
        c.jwt_secret = None;
        c.jwt_public_key = Some(format!("{KEYS}/rsa_public.pem").into());
    })
    .await;
    let rsa = EncodingKey::from_rsa_pem(&key("rsa_private.pem")).unwrap();
    let good = sign(Algorithm::RS256, &valid_claims(), &rsa);
    let c = server.connect(&good).await;
    assert_eq!(c.welcome["user_id"], "u1");
    // Algorithm confusion: an HS256 token "signed" with the RSA public key as secret.
    let confused = sign(
        Algorithm::HS256,
        &valid_claims(),
        &EncodingKey::from_secret(&key("rsa_public.pem")),
    );
    assert_401(&server, &confused, "algorithm HS256").await;
    let ec = EncodingKey::from_ec_pem(&key("ec_private.pem")).unwrap();
    assert_401(
        &server,
        &sign(Algorithm::ES256, &valid_claims(), &ec),
        "algorithm ES256",
    )
    .await;
    // RS256 signed by a key the server does not know.
    let mut forged = good.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    assert_401(&server, &forged, "invalid signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_is_verified() {
    let server = TestServer::start_with(|c| {
        c.jwt_public_key = Some(format!("{KEYS}/ec_public.pem").into());
    })
    .await;
    let ec = EncodingKey::from_ec_pem(&key("ec_private.pem")).unwrap();
    let c = server
        .connect(&sign(Algorithm::ES256, &valid_claims(), &ec))
        .await;
    assert_eq!(c.welcome["user_id"], "u1");
    // The HS256 secret is configured too and still works.
    server.connect(&token("u2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_and_issuer_are_checked_when_configured() {
    let server = TestServer::start_with(|c| {
        c.jwt_audience = Some("my-app".into());
        c.jwt_issuer = Some("https://auth.example".into());
    })
    .await;
    let with = |aud: &str, iss: &str| {
        sign_hs256(
            &json!({"sub": "u1", "exp": now() + 60, "aud": aud, "iss": iss}),
            SECRET,
        )
    };
    server
        .connect(&with("my-app", "https://auth.example"))
        .await;
    assert_401(&server, &with("other", "https://auth.example"), "audience").await;
    assert_401(&server, &with("my-app", "https://evil.example"), "issuer").await;
    assert_401(&server, &token("u1"), "missing claim").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_last_seq_is_400() {
    let server = TestServer::start().await;
    let (status, body) = server
        .refused(&format!("token={}&last_seq=-1", token("u")))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("last_seq"));
}
