//! The sans-IO part of `GET /sse`: checks the method and extracts the token, where delivery
//! resumes and the channels to subscribe to. Deterministic, so it is fuzzed
//! (`fuzz/fuzz_targets/sse_request.rs`).
//!
//! | input | rule | refusal |
//! |---|---|---|
//! | method | `GET` | 405 (with `Allow: GET`) |
//! | token | `Authorization: Bearer`, else `?token=` (as on `GET /ws`) | 400 for a malformed percent-escape; verification (401) comes after |
//! | `Last-Event-ID` | decimal seq; empty means absent; wins over `?last_seq=` | 400 |
//! | `?last_seq=N` | decimal seq (as on `GET /ws`) | 400 |
//! | `?protocol=` | `native` (the default) or `ag-ui` | 400 naming the value |
//! | `?channels=a,b` | comma-separated channel names; empty items are skipped | 400 naming the first invalid one |
//!
//! `Last-Event-ID` wins because it is what a browser's `EventSource` sends when it
//! reconnects by itself, to the URL it was first given: a `?last_seq=` in that URL is the
//! position of the first connect, the header the position the client actually reached.
//!
//! Memory: everything extracted is bounded by the request head, which hyper caps at
//! `max_request_head_bytes` (431 beyond it); channel names are at most 128 bytes each.

use agentcast_engine::{ChannelName, Resume};
use http::header::{self, HeaderName};
use http::{Method, Request, StatusCode};

use crate::client::protocol::Protocol;
use crate::client::request::{self, bad_escape, parse_seq, try_query_param};
use crate::http::Refusal;

/// The header an `EventSource` sends on reconnect: the `id:` of the last event it received.
pub(crate) const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// What a `GET /sse` request asks for, once its method, headers and query string checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseRequest {
    /// From `Last-Event-ID`, else `?last_seq=N`, else from the ack cursor.
    pub(crate) resume: Resume,
    /// The token (empty when none was given: the authenticator answers 401).
    pub(crate) token: String,
    /// From `?channels=`, in the order given (duplicates kept: subscribing twice is a no-op).
    pub(crate) channels: Vec<ChannelName>,
    /// From `?protocol=` (native when absent).
    pub(crate) protocol: Protocol,
}

/// Parses a `GET /sse` request. See the [module docs](self).
pub(crate) fn parse_sse<B>(req: &Request<B>) -> Result<SseRequest, Refusal> {
    if req.method() != Method::GET {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET to open an event stream",
        )
        .with_header(header::ALLOW, "GET"));
    }
    let query = req.uri().query().unwrap_or("");
    let resume = match last_event_id(req)? {
        Some(seq) => Resume::After(seq),
        None => request::last_seq(query)?,
    };
    let token = request::client_token(req.headers(), query)?;
    let channels = channels(query)?;
    let protocol = Protocol::from_query(query)?;
    Ok(SseRequest {
        resume,
        token,
        channels,
        protocol,
    })
}

/// The seq of the first `Last-Event-ID` header; `None` when absent or empty.
fn last_event_id<B>(req: &Request<B>) -> Result<Option<u64>, Refusal> {
    let Some(v) = req.headers().get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    let invalid = || {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "Last-Event-ID must be a non-negative integer (the seq of the last event received)",
        )
    };
    let s = v.to_str().map_err(|_| invalid())?.trim();
    if s.is_empty() {
        return Ok(None);
    }
    parse_seq(s).map(Some).ok_or_else(invalid)
}

/// The channel names of `?channels=a,b`.
fn channels(query: &str) -> Result<Vec<ChannelName>, Refusal> {
    let Some(list) = try_query_param(query, "channels").map_err(|_| bad_escape("channels"))? else {
        return Ok(Vec::new());
    };
    list.split(',')
        .filter(|c| !c.is_empty())
        .map(|c| {
            ChannelName::new(c).map_err(|e| {
                // Shown escaped (Debug), so a name with control characters stays one line.
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid channel {c:?} in `channels`: {e}"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn last_event_id_wins_over_last_seq() {
        let r = parse_sse(&req("/sse?last_seq=3&token=t", &[("last-event-id", "7")]));
        assert_eq!(r.map(|r| r.resume).ok(), Some(Resume::After(7)));
        let r = parse_sse(&req("/sse?last_seq=3", &[("last-event-id", "")]));
        assert_eq!(r.map(|r| r.resume).ok(), Some(Resume::After(3)));
        let r = parse_sse(&req("/sse", &[]));
        assert_eq!(r.map(|r| r.resume).ok(), Some(Resume::FromAck));
    }

    #[test]
    fn bad_resume_values_are_400() {
        for id in ["x", "-1", "1.5", "99999999999999999999"] {
            let r = parse_sse(&req("/sse", &[("last-event-id", id)]));
            assert_eq!(r.map_err(|e| e.status).err(), Some(StatusCode::BAD_REQUEST));
        }
        let r = parse_sse(&req("/sse?last_seq=x", &[]));
        assert_eq!(r.map_err(|e| e.status).err(), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn channels_are_split_and_validated() {
        let r = parse_sse(&req("/sse?channels=job%3A1,,team:a", &[])).expect("ok");
        let names: Vec<&str> = r.channels.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["job:1", "team:a"]);
        let e = parse_sse(&req("/sse?channels=ok,bad%20name", &[])).expect_err("refused");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("bad name"), "{}", e.message);
    }

    #[test]
    fn bearer_wins_over_the_query_token() {
        let r = parse_sse(&req("/sse?token=q", &[("authorization", "Bearer h")])).expect("ok");
        assert_eq!(r.token, "h");
        let r = parse_sse(&req("/sse?token=q", &[])).expect("ok");
        assert_eq!(r.token, "q");
    }
}
