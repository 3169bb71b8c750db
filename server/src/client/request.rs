//! The sans-IO parts of a client connect request shared by `GET /ws` and `GET /sse`: the
//! token and `?last_seq=`, and the query-string decoder behind them. Deterministic and
//! allocation-bounded by the request head (which hyper caps at `max_request_head_bytes`), so
//! both are fuzzed (`fuzz/fuzz_targets/upgrade_request.rs`, `sse_request.rs`).
//!
//! A malformed value is refused (400) rather than guessed at: a `%` not followed by two hex
//! digits, or bytes that are not UTF-8 once decoded, would otherwise give a token or seq
//! silently different from what the client meant.

use std::borrow::Cow;

use agentcast_engine::Resume;
use http::StatusCode;
use http::header::{self, HeaderMap};

use crate::http::Refusal;

/// The token of `Authorization: Bearer`, else of `?token=`; empty when neither is given (the
/// authenticator then answers 401 "missing token").
pub(crate) fn client_token(headers: &HeaderMap, query: &str) -> Result<String, Refusal> {
    match bearer(headers) {
        Some(t) => Ok(t.to_owned()),
        None => Ok(try_query_param(query, "token")
            .map_err(|_| bad_escape("token"))?
            .unwrap_or_default()
            .into_owned()),
    }
}

/// `?last_seq=N` as a [`Resume`]: `After(N)`, or `FromAck` without it.
pub(crate) fn last_seq(query: &str) -> Result<Resume, Refusal> {
    match try_query_param(query, "last_seq").map_err(|_| bad_escape("last_seq"))? {
        None => Ok(Resume::FromAck),
        Some(s) => parse_seq(&s).map(Resume::After).ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "last_seq must be a non-negative integer",
            )
        }),
    }
}

/// A seq as clients write it: what `u64::from_str` accepts (decimal digits, an optional
/// `+`), as `?last_seq=` always took it on `GET /ws`.
pub(crate) fn parse_seq(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// The 400 of a query value that does not decode.
pub(crate) fn bad_escape(name: &str) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        format!("`{name}` in the query string has a malformed percent-escape"),
    )
}

/// The token of `Authorization: Bearer <token>`.
pub(crate) fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// A query value that cannot be decoded: a `%` not followed by two hex digits, or bytes that
/// are not UTF-8 once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadEscape;

/// The decoded value of `name` in a query string (first occurrence), or `None`; a malformed
/// value is `None` too. See [`try_query_param`].
pub(crate) fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    try_query_param(query, name).ok().flatten()
}

/// The decoded value of `name` in a query string (first occurrence): `+` is a space
/// (`application/x-www-form-urlencoded`), `%XX` a byte (decoded by the `percent-encoding`
/// crate); a malformed escape or non-UTF-8 result is [`BadEscape`].
pub(crate) fn try_query_param<'a>(
    query: &'a str,
    name: &str,
) -> Result<Option<Cow<'a, str>>, BadEscape> {
    let Some(raw) = query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    }) else {
        return Ok(None);
    };
    form_decode(raw).map(Some)
}

fn form_decode(s: &str) -> Result<Cow<'_, str>, BadEscape> {
    let b = s.as_bytes();
    // `percent-encoding` passes a malformed escape through as it is; the client gets a 400
    // instead, rather than a token or seq silently different from what it meant.
    let well_formed = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(BadEscape);
    }
    let spaced: Cow<'_, str> = if s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    match spaced {
        Cow::Borrowed(s) => percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map_err(|_| BadEscape),
        Cow::Owned(s) => percent_encoding::percent_decode_str(&s)
            .decode_utf8()
            .map(|c| Cow::Owned(c.into_owned()))
            .map_err(|_| BadEscape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        assert_eq!(
            query_param("a=1&token=x%2Ey&last_seq=5", "token").as_deref(),
            Some("x.y")
        );
        assert_eq!(query_param("last_seq=5", "last_seq").as_deref(), Some("5"));
        assert_eq!(try_query_param("x=%zz", "x"), Err(BadEscape));
        assert_eq!(try_query_param("x=ab%4", "x"), Err(BadEscape));
        assert_eq!(try_query_param("x=%ff", "x"), Err(BadEscape));
        assert_eq!(query_param("x=%41", "x").as_deref(), Some("A"));
        assert_eq!(query_param("x=a+b%2B", "x").as_deref(), Some("a b+"));
        assert_eq!(query_param("tokenx=1", "token"), None);
    }

    #[test]
    fn seqs_are_plain_decimal() {
        assert_eq!(parse_seq("0"), Some(0));
        assert_eq!(parse_seq("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_seq("18446744073709551616"), None);
        for bad in ["", "-1", " 1", "1 ", "0x1", "1e3"] {
            assert_eq!(parse_seq(bad), None, "{bad:?}");
        }
    }
}
