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
//!   a session ends with its token: at `exp` + leeway the server closes it with 4001
//!   (see [`crate::ws::session`]);
//! - the lifetime, `exp` − `iat` (or `exp` − now without `iat`; an `iat` in the future counts
//!   as now), must not exceed `jwt_max_lifetime_secs` (default 7 days), so a leaked
//!   long-lived token is refused;
//! - `aud` / `iss`: checked when configured; with `jwt_public_key` set and no `jwt_audience`,
//!   start-up logs a warning (a shared identity provider's tokens for other apps would be
//!   accepted);
//! - `tier`: `free|early|mid|enterprise`, default `free`; another value is refused;
//! - `channels`: channel names the connection may subscribe to, exact names or patterns that
//!   end at a `:` separator (`job:*` grants every channel starting with `job:`; `*` alone
//!   grants all). Any other `*` (`team*`, `a*b`) refuses the token, so `team*` can never
//!   grant `teams:admin`.
//!
//! A header with `crit` (RFC 7515 §4.1.11: extensions the recipient "MUST understand") is
//! refused: this server understands none. Every refusal is an [`AuthError`] whose message is
//! the reason sent to the client in the 401 body. A token longer than `max_token_bytes` is
//! refused before any decoding.
//!
//! An HS256 secret shorter than [`MIN_SECRET_BYTES`] is refused when the authenticator is
//! built ([`KeyError::ShortSecret`]), outside dev mode (whose generated secret is long enough).
//!
//! # API key
//!
//! Compared in constant time with [`subtle`]: both sides are hashed with SHA-256 first, so
//! neither the content nor the length of the configured key leaks through timing.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use agentcast_engine::{ChannelName, UserId};
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
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
    /// The header has `crit` (RFC 7515 §4.1.11): no extension is understood here.
    #[error("critical header extensions (crit) are not supported")]
    Critical,
    /// `exp` − `iat` (or `exp` − now) exceeds `jwt_max_lifetime_secs`.
    #[error("token lifetime exceeds the maximum of {0} seconds")]
    LifetimeTooLong(u64),
    /// A `channels` entry has a `*` that is neither `*` alone nor a final `:*`.
    #[error("invalid channel pattern `{0}`: a `*` must be alone or follow a final `:`")]
    ChannelPattern(String),
}

/// The shortest HS256 secret accepted outside dev mode, in bytes (RFC 7518 §3.2: "a key of
/// the same size as the hash output (for instance, 256 bits for HS256) or larger MUST be used").
pub const MIN_SECRET_BYTES: usize = 32;

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
    /// The HS256 secret is too short to resist brute force: configure a longer one.
    #[error(
        "jwt_secret is {0} bytes; at least {MIN_SECRET_BYTES} are required (for example `openssl rand -hex 32`)"
    )]
    ShortSecret(usize),
    /// A token would live longer than `jwt_max_lifetime_secs`, so the server would refuse it.
    #[error("ttl of {0} s exceeds jwt_max_lifetime_secs ({1} s)")]
    TtlTooLong(u64, u64),
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
    /// Grants from claim values: `*` alone grants every channel, `prefix:*` every channel
    /// starting with `prefix:`, anything else exactly itself. A `*` anywhere else is refused
    /// with [`AuthError::ChannelPattern`] (a plain prefix like `team*` would grant
    /// `teams:admin`).
    pub fn new<S: AsRef<str>>(items: &[S]) -> Result<ChannelGrants, AuthError> {
        items
            .iter()
            .map(|s| {
                let s = s.as_ref();
                let grant = match s.strip_suffix('*') {
                    Some("") => Grant::Prefix("".into()),
                    Some(p) if p.ends_with(':') => Grant::Prefix(p.into()),
                    _ => Grant::Exact(s.into()),
                };
                let bare = match &grant {
                    Grant::Prefix(p) | Grant::Exact(p) => p,
                };
                if bare.contains('*') {
                    return Err(AuthError::ChannelPattern(s.chars().take(64).collect()));
                }
                Ok(grant)
            })
            .collect::<Result<_, _>>()
            .map(ChannelGrants)
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
    /// The `exp` claim (Unix seconds): the session is closed at this time plus the leeway.
    pub expires_at: u64,
}

/// Claims as found in a token (unknown claims are ignored). `exp` and `iat` are read as
/// numbers of any JSON form (jsonwebtoken has already checked `exp`).
#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
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
    /// SHA-256 of the configured API key: compared with the presented key's digest.
    api_key: Option<[u8; 32]>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway: u64,
    max_token: usize,
    max_lifetime: u64,
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
    /// Builds the keys named by `cfg` (reads the public-key PEM, if any). Refuses an HS256
    /// secret shorter than [`MIN_SECRET_BYTES`] unless `cfg.dev_mode`; warns (once per call)
    /// when a public key is configured without an audience.
    pub fn from_config(cfg: &Config) -> Result<Authenticator, KeyError> {
        if let Some(s) = &cfg.jwt_secret {
            if s.len() < MIN_SECRET_BYTES && !cfg.dev_mode {
                return Err(KeyError::ShortSecret(s.len()));
            }
        }
        let public = match &cfg.jwt_public_key {
            Some(path) => Some(load_public_key(path)?),
            None => None,
        };
        if public.is_some() && cfg.jwt_audience.is_none() {
            tracing::warn!(
                "jwt_public_key is set but jwt_audience is not: any token this key signed is \
                 accepted, including a shared identity provider's tokens for other apps; set \
                 jwt_audience (AGENTCAST_JWT_AUDIENCE, --jwt-audience)"
            );
        }
        Ok(Authenticator {
            secret: cfg.jwt_secret.as_ref().map(|s| {
                (
                    DecodingKey::from_secret(s.as_bytes()),
                    EncodingKey::from_secret(s.as_bytes()),
                )
            }),
            public,
            api_key: cfg
                .api_key
                .as_ref()
                .map(|k| Sha256::digest(k.as_bytes()).into()),
            audience: cfg.jwt_audience.clone(),
            issuer: cfg.jwt_issuer.clone(),
            leeway: cfg.jwt_leeway_secs,
            max_token: cfg.limits.max_token_bytes,
            max_lifetime: cfg.jwt_max_lifetime_secs,
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
        if header.crit.is_some() {
            return Err(AuthError::Critical);
        }
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
        let exp = c
            .exp
            .filter(|e| e.is_finite() && *e >= 0.0)
            .ok_or_else(|| AuthError::InvalidClaim("exp".into()))? as u64;
        let now = unix_now();
        let issued = c.iat.map_or(now, |i| (i.max(0.0) as u64).min(now));
        if exp.saturating_sub(issued) > self.max_lifetime {
            return Err(AuthError::LifetimeTooLong(self.max_lifetime));
        }
        let sub = c.sub.ok_or_else(|| AuthError::MissingClaim("sub".into()))?;
        let user = UserId::new(&sub).map_err(|_| AuthError::InvalidClaim("sub".into()))?;
        let tier = match c.tier.as_deref() {
            None => Tier::Free,
            Some(t) => Tier::parse(t).ok_or_else(|| AuthError::InvalidClaim("tier".into()))?,
        };
        Ok(Identity {
            user,
            tier,
            channels: ChannelGrants::new(c.channels.as_deref().unwrap_or_default())?,
            expires_at: exp,
        })
    }

    /// The configured clock-skew leeway, seconds (a session is closed at `exp` + leeway).
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    /// Whether `presented` equals the configured API key. Both sides are SHA-256 digests
    /// compared with [`subtle::ConstantTimeEq`], so the time taken reveals neither the key's
    /// content nor its length. With no key configured, nothing is accepted.
    pub fn check_api_key(&self, presented: &[u8]) -> bool {
        match &self.api_key {
            Some(k) => {
                let p: [u8; 32] = Sha256::digest(presented).into();
                bool::from(k.ct_eq(&p))
            }
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
        if ttl_secs > self.max_lifetime {
            return Err(KeyError::TtlTooLong(ttl_secs, self.max_lifetime));
        }
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
            jwt_secret: Some("unit-test-secret-of-at-least-32-bytes".into()),
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
    fn grants_end_at_a_separator() {
        let g = ChannelGrants::new(&["job:*", "news", "*"][..2]).unwrap();
        assert!(g.allows(&ChannelName::new("job:1").unwrap()));
        assert!(!g.allows(&ChannelName::new("jobs").unwrap()));
        let all = ChannelGrants::new(&["*"]).unwrap();
        assert!(all.allows(&ChannelName::new("teams:admin").unwrap()));
        for bad in ["team*", "a*b", "job:**", "*:x"] {
            assert!(
                matches!(
                    ChannelGrants::new(&[bad]),
                    Err(AuthError::ChannelPattern(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn short_secrets_are_refused_outside_dev_mode() {
        let mut cfg = Config {
            jwt_secret: Some("s".repeat(MIN_SECRET_BYTES - 1)),
            ..Config::default()
        };
        assert!(matches!(
            Authenticator::from_config(&cfg),
            Err(KeyError::ShortSecret(31))
        ));
        cfg.dev_mode = true;
        assert!(Authenticator::from_config(&cfg).is_ok());
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
