//! Hostile tokens on `GET /ws`: `alg: none`, HS256 signed with the server's RS256 public key
//! (algorithm confusion), expired, not yet valid, wrong `aud` / `iss`, a tampered payload, a
//! 64 KiB token, and more malformed ones. Each gets HTTP 401 before the upgrade with a JSON
//! body saying why; nothing is registered; the probe keeps receiving.

mod hostile;

use std::path::PathBuf;

use agentcast_tests::{SECRET, TestServer, now, parse_response};
use base64::Engine as _;
use hostile::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AUD: &str = "agentcast";
const ISS: &str = "https://issuer.example";

fn keys() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn key(name: &str) -> Vec<u8> {
    std::fs::read(keys().join(name)).expect("test key")
}

fn claims(user: &str) -> Value {
    json!({"sub": user, "exp": now() + 3600, "aud": AUD, "iss": ISS})
}

fn with(mut c: Value, extra: Value) -> Value {
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    c
}

fn sign(alg: Algorithm, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn rs(claims: &Value) -> String {
    let k = EncodingKey::from_rsa_pem(&key("rsa_private.pem")).expect("rsa key");
    sign(Algorithm::RS256, claims, &k)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `header.payload.` with the given raw JSON parts and signature.
fn raw_token(header: &str, payload: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64(header.as_bytes()),
        b64(payload.to_string().as_bytes())
    )
}

/// Sends the upgrade with `Authorization: Bearer <token>`; returns status and JSON body.
async fn refused_with_header(server: &TestServer, token: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(agentcast_tests::WAIT, s.read_to_end(&mut raw)).await;
    let (status, body) = parse_response(&raw);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_get_401_with_the_reason() {
    let server = TestServer::start_with(|c| {
        c.jwt_public_key = Some(keys().join("rsa_public.pem"));
        c.jwt_audience = Some(AUD.into());
        c.jwt_issuer = Some(ISS.into());
        c.jwt_leeway_secs = 5;
        // Heads up to 128 KiB reach the token check (by default a head over 16 KiB is
        // answered 431 first, see pre_auth_connections.rs).
        c.limits.max_request_head_bytes = 128 * 1024;
    })
    .await;
    let mut probe = Probe::connect_with(&server, "tokens", |u| rs(&claims(u))).await;
    let ledger = Ledger::start("tokens", &server, 1).await;

    // Both accepted forms work, so every refusal below is about the token.
    for good in [hs(&claims("ok")), rs(&claims("ok"))] {
        let c = server.connect(&good).await;
        assert_eq!(c.welcome["user_id"], "ok");
    }

    let rsa_public = key("rsa_public.pem");
    let valid = rs(&claims("victim"));
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("admin").to_string().as_bytes()),
        parts[2]
    );
    let ec = EncodingKey::from_ec_pem(&key("ec_private.pem")).unwrap();
    let long = format!("{}.{}.{}", "a".repeat(100), "b".repeat(64 * 1024), "c");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            raw_token(r#"{"alg":"none","typ":"JWT"}"#, &claims("x"), ""),
            "alg none",
        ),
        (
            "alg NONE",
            raw_token(r#"{"alg":"NONE"}"#, &claims("x"), ""),
            "alg none",
        ),
        (
            "HS256 signed with the RS256 public key",
            sign(
                Algorithm::HS256,
                &claims("x"),
                &EncodingKey::from_secret(&rsa_public),
            ),
            "invalid signature",
        ),
        (
            "RS256 header on an HS256 signature",
            raw_token(r#"{"alg":"RS256"}"#, &claims("x"), &b64(&[0u8; 32])),
            "",
        ),
        (
            "ES256 when only RS256 is configured",
            sign(Algorithm::ES256, &claims("x"), &ec),
            "not accepted",
        ),
        (
            "HS512 with the right secret",
            sign(
                Algorithm::HS512,
                &claims("x"),
                &EncodingKey::from_secret(SECRET.as_bytes()),
            ),
            "not accepted",
        ),
        (
            "expired",
            rs(&with(claims("x"), json!({"exp": now() - 3600}))),
            "expired",
        ),
        (
            "not yet valid",
            rs(&with(claims("x"), json!({"nbf": now() + 3600}))),
            "not yet valid",
        ),
        (
            "wrong aud",
            rs(&with(claims("x"), json!({"aud": "someone-else"}))),
            "audience",
        ),
        (
            "wrong iss",
            rs(&with(claims("x"), json!({"iss": "https://evil.example"}))),
            "issuer",
        ),
        (
            "missing aud",
            rs(&json!({"sub": "x", "exp": now() + 60, "iss": ISS})),
            "aud",
        ),
        (
            "missing exp",
            rs(&json!({"sub": "x", "aud": AUD, "iss": ISS})),
            "exp",
        ),
        (
            "missing sub",
            rs(&json!({"exp": now() + 60, "aud": AUD, "iss": ISS})),
            "sub",
        ),
        (
            "exp as a string",
            rs(&with(claims("x"), json!({"exp": "tomorrow"}))),
            "",
        ),
        (
            "unknown tier",
            rs(&with(claims("x"), json!({"tier": "root"}))),
            "tier",
        ),
        (
            "sub with a control character",
            rs(&with(claims("x"), json!({"sub": "a\u{1}b"}))),
            "sub",
        ),
        ("tampered payload", tampered, "invalid signature"),
        (
            "signature stripped",
            format!("{}.{}.", parts[0], parts[1]),
            "",
        ),
        (
            "two segments",
            format!("{}.{}", parts[0], parts[1]),
            "malformed",
        ),
        ("garbage", "not-a-jwt".into(), "malformed"),
        ("header not base64", "!!!.e30.e30".into(), "malformed"),
        (
            "header not JSON",
            format!("{}.e30.e30", b64(b"not json")),
            "malformed",
        ),
        ("64 KiB token", long, "longer than 8192 bytes"),
    ];
    for (case, token, needle) in &cases {
        for via_header in [true, false] {
            let (status, body) = if via_header {
                refused_with_header(&server, token).await
            } else {
                // A 64 KiB query overflows the URI limit of the HTTP layer (64 KiB - 2).
                if token.len() > 60_000 {
                    continue;
                }
                server.refused(&format!("token={token}")).await
            };
            assert_eq!(status, 401, "{case} (header: {via_header}): {body}");
            let e = body["error"].as_str().unwrap_or_default();
            assert!(!e.is_empty(), "{case}: no reason given");
            assert!(
                e.to_lowercase().contains(&needle.to_lowercase()),
                "{case}: `{e}` does not mention `{needle}`"
            );
            ledger.case();
        }
        probe.check(&server, case).await;
    }
    // A 60 KiB token in the query string reaches the authenticator and is refused by length.
    let query_long = format!("{}.{}.{}", "a".repeat(10), "b".repeat(60 * 1024), "c");
    let (status, body) = server.refused(&format!("token={query_long}")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("longer than"));
    ledger.case();
    // Missing token, and an empty bearer.
    let (status, body) = server.refused("last_seq=1").await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("missing token"));
    let (status, _) = refused_with_header(&server, "").await;
    assert_eq!(status, 401);
    ledger.cases(2);
    probe.check(&server, "long and missing tokens").await;

    let s = stats(&server).await;
    let rejected = s["server"]["ws_rejected_auth"].as_u64().unwrap();
    println!("ws_rejected_auth = {rejected}");
    // Users given state after the baseline: `ok` (every other token is refused).
    ledger.finish(&server, &probe, 64 * 1024, 1).await;
}
