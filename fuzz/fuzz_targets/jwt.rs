//! Client JWTs through the server's authenticator (HS256 secret plus an RS256 or ES256 public
//! key, with and without `aud`/`iss`): any token string gives an identity or an `AuthError`,
//! never a panic; and a token made of arbitrary header and claims JSON, signed with one of the
//! test keys (or the RSA public key used as an HMAC secret, or no signature), verifies only
//! when its signer is the configured key of the algorithm its header names, and only when its
//! `exp`/`nbf`/`aud`/`iss` allow it.
#![no_main]
use std::sync::OnceLock;

use agentcast_server::Config;
use agentcast_server::auth::Authenticator;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

const SECRET: &str = "fuzz-secret-of-at-least-32-bytes-long";
const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/keys/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../tests/keys/ec_public.pem");

struct Fixture {
    /// (authenticator, algorithm of its public key, aud/iss configured)
    auths: Vec<(Authenticator, Algorithm, bool)>,
    /// Signers, by index: the HS256 secret, a wrong secret, the RSA public key as an HMAC
    /// secret (algorithm confusion), the RSA private key, the EC private key.
    signers: Vec<(EncodingKey, Algorithm)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("agentcast-fuzz-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let rsa = dir.join("rsa_public.pem");
        let ec = dir.join("ec_public.pem");
        std::fs::write(&rsa, RSA_PUBLIC).expect("write pem");
        std::fs::write(&ec, EC_PUBLIC).expect("write pem");
        let auth = |public: &std::path::Path, aud_iss: bool| {
            let mut cfg = Config::default();
            cfg.jwt_secret = Some(SECRET.into());
            cfg.jwt_public_key = Some(public.to_owned());
            if aud_iss {
                cfg.jwt_audience = Some("agentcast".into());
                cfg.jwt_issuer = Some("issuer".into());
            }
            Authenticator::from_config(&cfg).expect("keys load")
        };
        Fixture {
            auths: vec![
                (auth(&rsa, false), Algorithm::RS256, false),
                (auth(&ec, true), Algorithm::ES256, true),
            ],
            signers: vec![
                (
                    EncodingKey::from_secret(SECRET.as_bytes()),
                    Algorithm::HS256,
                ),
                (EncodingKey::from_secret(b"wrong"), Algorithm::HS256),
                (EncodingKey::from_secret(RSA_PUBLIC), Algorithm::HS256),
                (
                    EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa key"),
                    Algorithm::RS256,
                ),
                (
                    EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec key"),
                    Algorithm::ES256,
                ),
            ],
        }
    })
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `header.claims.signature` with the signer's algorithm, whatever the header says.
fn sign(header: &[u8], claims: &[u8], signer: usize) -> String {
    let msg = format!("{}.{}", b64(header), b64(claims));
    if signer >= fixture().signers.len() {
        return format!("{msg}."); // unsigned
    }
    let (key, alg) = &fixture().signers[signer];
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, *alg).expect("sign");
    format!("{msg}.{sig}")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether `signer` is the configured key of `alg` for an authenticator with `public`.
fn legit(signer: usize, alg: Algorithm, public: Algorithm) -> bool {
    matches!(
        (signer, alg),
        (0, Algorithm::HS256) | (3, Algorithm::RS256) | (4, Algorithm::ES256)
    ) && (alg == Algorithm::HS256 || alg == public)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [mode, pick, rest @ ..] = data else {
        return;
    };
    let f = fixture();
    match mode % 3 {
        // Any token string.
        0 => {
            let token = String::from_utf8_lossy(rest);
            for (a, _, _) in &f.auths {
                if let Ok(id) = a.verify(&token) {
                    assert!(!id.user.as_str().is_empty());
                }
            }
        }
        // Arbitrary header and claims JSON, signed with any of the keys.
        1 => {
            let cut = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
            let (header, claims) = (&rest[..cut], rest.get(cut + 1..).unwrap_or_default());
            let signer = usize::from(*pick) % (f.signers.len() + 1);
            let token = sign(header, claims, signer);
            for (a, public, _) in &f.auths {
                if let Ok(id) = a.verify(&token) {
                    let h = jsonwebtoken::decode_header(&token).expect("verified header");
                    assert!(
                        legit(signer, h.alg, *public),
                        "signer {signer} alg {:?}",
                        h.alg
                    );
                    let c: Value = serde_json::from_slice(claims).expect("verified claims");
                    assert_eq!(c["sub"].as_str(), Some(id.user.as_str()));
                    assert!(c.get("exp").is_some());
                }
            }
        }
        // Well-formed claims with fuzzed times, audience, issuer and tier, legitimately signed.
        _ => {
            let b = |i: usize| rest.get(i).copied().unwrap_or(0);
            let offset = |x: u8| (i64::from(x) - 128) * 10;
            let exp = now() + offset(b(0));
            let nbf = now() + offset(b(1));
            let aud = ["agentcast", "other", ""][usize::from(b(2)) % 3];
            let iss = ["issuer", "someone", ""][usize::from(b(3)) % 3];
            let tier = ["free", "enterprise", "gold", ""][usize::from(b(4)) % 4];
            let sub = String::from_utf8_lossy(rest.get(5..).unwrap_or_default()).into_owned();
            let mut claims = json!({"sub": sub, "exp": exp});
            if b(1) & 1 == 1 {
                claims["nbf"] = json!(nbf);
            }
            for (k, v) in [("aud", aud), ("iss", iss), ("tier", tier)] {
                if !v.is_empty() {
                    claims[k] = json!(v);
                }
            }
            let signer = [0, 3, 4][usize::from(*pick) % 3];
            let alg = f.signers[signer].1;
            let header = serde_json::to_vec(&json!({"alg": format!("{alg:?}"), "typ": "JWT"}))
                .expect("json");
            let token = sign(&header, claims.to_string().as_bytes(), signer);
            for (a, public, aud_iss) in &f.auths {
                let ok = a.verify(&token).is_ok();
                // Leeway is 60 s by default or less; margins keep the clock out of it.
                if exp < now() - 120 || (b(1) & 1 == 1 && nbf > now() + 120) {
                    assert!(!ok, "expired or not yet valid token accepted");
                }
                if *aud_iss && (aud != "agentcast" || iss != "issuer") {
                    assert!(!ok, "wrong aud/iss accepted");
                }
                if tier == "gold" || !legit(signer, alg, *public) {
                    assert!(!ok);
                }
            }
        }
    }
});
