//! Authentication: client JWTs (WebSocket connect) and the publish API key.
//!
//! # Client JWTs
//!
//! Accepted algorithms follow the configured keys: HS256 when `jwt_secret` is set, RS256 or
//! ES256 (whichever the PEM holds) when `jwt_public_key` is set. The algorithm named in the
//! token header selects the key, and only an algorithm whose key is configured is accepted, so
//! an HS256 token "signed" with an RSA public key (algorithm confusion) and `alg: none` are
//! refused. Claims:
//!
//! - `sub` (required): the user id;
//! - `exp` (required) and `nbf` (honoured when present), both with `jwt_leeway_secs` of skew;
//! - `aud` / `iss`: checked when configured;
//! - `tier`: `free|early|mid|enterprise`, default `free`; another value is refused;
//! - `channels`: channel names the connection may subscribe to, exact or `prefix*` patterns
//!   (`job:*` grants every channel starting with `job:`; `*` grants all).
//!
//! Every refusal is an [`AuthError`] whose message is the reason sent to the client in the
//! 401 body. A token longer than `max_token_bytes` is refused before any decoding.
//!
//! # API key
//!
//! Compared in constant time over its bytes (the length may leak; the content does not).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use agentcast_engine::{ChannelName, UserId};
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::Config;
use crate::tier::Tier;

/// Why a client token was refused. The message is the 401 body's `error`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No token in `Authorization: Bearer` nor `?token=`.
    #[error("missing token: send `Authorization: Bearer <jwt>` or `?token=<jwt>`")]
    Missing,
    /// The token exceeds `max_token_bytes`.
    #[error("token longer than {0} bytes")]
    TooLong(usize),
    /// Not a well-formed JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg: none`.
    #[error("unsigned tokens (alg none) are not accepted")]
    AlgNone,
    /// The header's algorithm has no configured key (or is unknown).
    #[error("algorithm {0} is not accepted by this server")]
    Algorithm(String),
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    /// A required claim is absent.
    #[error("missing claim `{0}`")]
    MissingClaim(String),
    /// A claim has the wrong type or value.
    #[error("invalid claim `{0}`")]
    InvalidClaim(String),
    /// `aud` does not match.
    #[error("wrong audience")]
    Audience,
    /// `iss` does not match.
    #[error("wrong issuer")]
    Issuer,
}

/// Why the authenticator could not be built from the configuration.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The PEM file could not be read.
    #[error("cannot read JWT public key {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PEM holds neither an RSA nor a P-256 public key.
    #[error("JWT public key {0} is neither an RSA nor an EC (P-256) public key")]
    Unsupported(String),
    /// Minting needs an HS256 secret.
    #[error("no jwt_secret configured: set --jwt-secret or AGENTCAST_JWT_SECRET")]
    NoSecret,
    /// Signing failed.
    #[error("cannot sign token: {0}")]
    Sign(String),
}

/// What a channel grant allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    Exact(Box<str>),
    Prefix(Box<str>),
}

/// The channels a connection may subscribe to (the `channels` claim).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelGrants(Box<[Grant]>);

impl ChannelGrants {
    /// Grants from claim values: `*` suffix makes a prefix pattern.
    pub fn new<S: AsRef<str>>(items: &[S]) -> ChannelGrants {
        ChannelGrants(
            items
                .iter()
                .map(|s| {
                    let s = s.as_ref();
                    match s.strip_suffix('*') {
                        Some(p) => Grant::Prefix(p.into()),
                        None => Grant::Exact(s.into()),
                    }
                })
                .collect(),
        )
    }

    /// Whether `channel` is granted. O(grants).
    pub fn allows(&self, channel: &ChannelName) -> bool {
        let c = channel.as_str();
        self.0.iter().any(|g| match g {
            Grant::Exact(e) => **e == *c,
            Grant::Prefix(p) => c.starts_with(&**p),
        })
    }
}

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The `sub` claim.
    pub user: UserId,
    /// The `tier` claim.
    pub tier: Tier,
    /// The `channels` claim.
    pub channels: ChannelGrants,
}

/// Claims as found in a token (unknown claims are ignored).
#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
}

/// Claims written by [`Authenticator::mint`].
#[derive(Debug, Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    tier: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    channels: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

/// Verifies client tokens and the publish API key. Built once from the [`Config`].
pub struct Authenticator {
    secret: Option<(DecodingKey, EncodingKey)>,
    public: Option<(Algorithm, DecodingKey)>,
    api_key: Option<Box<[u8]>>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway: u64,
    max_token: usize,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.secret.is_some())
            .field("public", &self.public.as_ref().map(|p| p.0))
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the keys named by `cfg` (reads the public-key PEM, if any).
    pub fn from_config(cfg: &Config) -> Result<Authenticator, KeyError> {
        let public = match &cfg.jwt_public_key {
            Some(path) => Some(load_public_key(path)?),
            None => None,
        };
        Ok(Authenticator {
            secret: cfg.jwt_secret.as_ref().map(|s| {
                (
                    DecodingKey::from_secret(s.as_bytes()),
                    EncodingKey::from_secret(s.as_bytes()),
                )
            }),
            public,
            api_key: cfg.api_key.as_ref().map(|k| k.as_bytes().into()),
            audience: cfg.jwt_audience.clone(),
            issuer: cfg.jwt_issuer.clone(),
            leeway: cfg.jwt_leeway_secs,
            max_token: cfg.limits.max_token_bytes,
        })
    }

    /// Verifies a client token. See the [module docs](self) for the rules.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > self.max_token {
            return Err(AuthError::TooLong(self.max_token));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_error(token))?;
        let key = match header.alg {
            Algorithm::HS256 => self.secret.as_ref().map(|(d, _)| d),
            alg => self
                .public
                .as_ref()
                .filter(|(a, _)| *a == alg)
                .map(|(_, d)| d),
        };
        let Some(key) = key else {
            return Err(AuthError::Algorithm(format!("{:?}", header.alg)));
        };
        let mut v = Validation::new(header.alg);
        v.set_required_spec_claims(&["exp", "sub"]);
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        match &self.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
            v.required_spec_claims.insert("iss".into());
        }
        if self.audience.is_some() {
            v.required_spec_claims.insert("aud".into());
        }
        let data = jsonwebtoken::decode::<RawClaims>(token, key, &v).map_err(map_jwt_error)?;
        let c = data.claims;
        let sub = c.sub.ok_or_else(|| AuthError::MissingClaim("sub".into()))?;
        let user = UserId::new(&sub).map_err(|_| AuthError::InvalidClaim("sub".into()))?;
        let tier = match c.tier.as_deref() {
            None => Tier::Free,
            Some(t) => Tier::parse(t).ok_or_else(|| AuthError::InvalidClaim("tier".into()))?,
        };
        Ok(Identity {
            user,
            tier,
            channels: ChannelGrants::new(c.channels.as_deref().unwrap_or_default()),
        })
    }

    /// Whether `presented` equals the configured API key (constant time over the bytes).
    /// With no key configured, nothing is accepted.
    pub fn check_api_key(&self, presented: &[u8]) -> bool {
        match &self.api_key {
            Some(k) => constant_time_eq(k, presented),
            None => false,
        }
    }

    /// Mints an HS256 token for `user` valid `ttl_secs`, with `tier` and `channels`, and the
    /// configured `aud`/`iss`.
    pub fn mint(
        &self,
        user: &str,
        tier: Tier,
        ttl_secs: u64,
        channels: &[String],
    ) -> Result<String, KeyError> {
        let (_, key) = self.secret.as_ref().ok_or(KeyError::NoSecret)?;
        let now = unix_now();
        let claims = MintClaims {
            sub: user,
            iat: now,
            exp: now + ttl_secs,
            tier: tier.as_str(),
            channels,
            aud: self.audience.as_deref(),
            iss: self.issuer.as_deref(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }
}

fn load_public_key(path: &Path) -> Result<(Algorithm, DecodingKey), KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, k));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        return Ok((Algorithm::ES256, k));
    }
    Err(KeyError::Unsupported(path.display().to_string()))
}

/// Explains a header that jsonwebtoken refused: `alg: none` and unknown algorithms get their
/// own reasons. A token that is not three dot-separated parts, or whose header names a known
/// algorithm but is otherwise invalid, is malformed (not "algorithm not accepted", which
/// would mislead the client about a configured algorithm; found by the hostile token suite).
fn header_error(token: &str) -> AuthError {
    if token.split('.').count() != 3 {
        return AuthError::Malformed("expected three dot-separated parts".into());
    }
    let Some(first) = token.split('.').next() else {
        return AuthError::Malformed("no header".into());
    };
    let Ok(raw) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(first.trim_end_matches('='))
    else {
        return AuthError::Malformed("header is not base64url".into());
    };
    match serde_json::from_slice::<serde_json::Value>(&raw) {
        Ok(v) => match v.get("alg").and_then(|a| a.as_str()) {
            Some(a) if a.eq_ignore_ascii_case("none") => AuthError::AlgNone,
            Some(a) if a.parse::<Algorithm>().is_ok() => {
                AuthError::Malformed("invalid JWT header".into())
            }
            Some(a) => AuthError::Algorithm(a.chars().take(16).collect()),
            None => AuthError::Malformed("header has no alg".into()),
        },
        Err(_) => AuthError::Malformed("header is not JSON".into()),
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.into_kind() {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAlgorithm => AuthError::Algorithm("mismatch".into()),
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c),
        ErrorKind::InvalidClaimFormat(c) => AuthError::InvalidClaim(c),
        ErrorKind::Json(e) => AuthError::Malformed(format!("claims: {e}")),
        ErrorKind::InvalidToken => AuthError::Malformed("not a JWT".into()),
        ErrorKind::Base64(_) => AuthError::Malformed("not base64url".into()),
        ErrorKind::Utf8(_) => AuthError::Malformed("not UTF-8".into()),
        other => AuthError::Malformed(format!("{other:?}")),
    }
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        let cfg = Config {
            jwt_secret: Some("s3cret".into()),
            api_key: Some("key".into()),
            ..Config::default()
        };
        Authenticator::from_config(&cfg).unwrap()
    }

    #[test]
    fn minted_tokens_verify_with_tier_and_grants() {
        let a = auth();
        let t = a
            .mint("alice", Tier::Mid, 60, &["job:*".into(), "news".into()])
            .unwrap();
        let id = a.verify(&t).unwrap();
        assert_eq!(id.user.as_str(), "alice");
        assert_eq!(id.tier, Tier::Mid);
        assert!(id.channels.allows(&ChannelName::new("job:1").unwrap()));
        assert!(id.channels.allows(&ChannelName::new("news").unwrap()));
        assert!(!id.channels.allows(&ChannelName::new("news2").unwrap()));
    }

    #[test]
    fn api_key_compare_is_exact() {
        let a = auth();
        assert!(a.check_api_key(b"key"));
        assert!(!a.check_api_key(b"kez"));
        assert!(!a.check_api_key(b"ke"));
    }

    #[test]
    fn a_known_algorithm_in_a_malformed_token_is_called_malformed() {
        // Two segments with an RS256 header used to answer "algorithm RS256 is not accepted".
        let t = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0";
        assert!(matches!(auth().verify(t), Err(AuthError::Malformed(_))));
        // A header naming RS256 with a bad field type is malformed too.
        let t = "eyJhbGciOiJSUzI1NiIsImtpZCI6NX0.e30.e30";
        assert!(matches!(auth().verify(t), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn alg_none_is_named() {
        let t = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert_eq!(auth().verify(t).unwrap_err(), AuthError::AlgNone);
    }
}
