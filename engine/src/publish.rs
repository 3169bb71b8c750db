//! Parsing of publish requests: the body of `POST /api/v1/publish` and each item of
//! `POST /api/v1/publish/batch`.
//!
//! ```json
//! {"user_id": "u1", "type": "agent_started", "run_id": "r1", "data": {"goal": "..."}}
//! {"channel": "job:42", "type": "tool_completed", "run_id": "r1", "data": {}}
//! {"broadcast": true, "type": "maintenance", "data": {"in_minutes": 5}}
//! ```
//!
//! Fields: exactly one target (`user_id`, `channel`, or `broadcast: true`); `type` (required);
//! `run_id` (required for the six agent types and the three message types, optional for custom
//! types); for the message types `data` must carry `message_id` (and `delta` for
//! `message_delta`, see [`crate::delta`]); `data` (any JSON,
//! default `{}`, kept byte for byte); `priority` (optional override: `low|normal|critical`);
//! `idempotency_key` (optional, 1 to 128 bytes); or, in place of `type` and `data`, `ag_ui`:
//! one AG-UI event, validated and mapped by [`crate::ag_ui`] (`docs/ag-ui.md`). Unknown fields are ignored so publishers can
//! add their own bookkeeping; duplicate fields are refused. A refused request names its field
//! and changes nothing.

use std::sync::Arc;

use bytes::Bytes;

use crate::ag_ui::{self, AgUiEvent};
use crate::error::ParseError;
use crate::event::{ChannelName, Data, Event, EventKind, Priority, Target, UserId};
use crate::json::{self, Members};

/// One parsed publish request.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// Who receives it.
    pub target: Target,
    /// What is published.
    pub event: Event,
    /// The publisher's deduplication key, if any.
    pub idempotency_key: Option<Arc<str>>,
}

impl PublishRequest {
    /// Parses one publish body. `body` is shared, so `data` is a zero-copy slice of it.
    pub fn parse(body: &Bytes) -> Result<PublishRequest, ParseError> {
        json::validate(body)?;
        Self::parse_validated(body, body)
    }

    fn parse_validated(whole: &Bytes, item: &[u8]) -> Result<PublishRequest, ParseError> {
        let m = Members::scan_validated(item)?;
        let target = parse_target(&m)?;
        if let Some(raw) = m.raw("ag_ui") {
            return parse_ag_ui(&m, target, raw);
        }
        let type_name = m.str("type")?.ok_or(ParseError::Missing("type"))?;
        let kind = EventKind::parse(&type_name).map_err(|e| ParseError::invalid("type", e))?;
        let run_id = match envelope_run_id(&m)? {
            None if kind.requires_run() => return Err(ParseError::Missing("run_id")),
            r => r,
        };
        let data = match m.raw("data") {
            Some(raw) => Data::from_validated(whole.slice_ref(raw)),
            None => Data::empty(),
        };
        if kind.is_message() {
            check_message_data(&kind, data.as_bytes())?;
        }
        let priority = envelope_priority(&m)?;
        let idempotency_key = envelope_idempotency_key(&m)?;
        Ok(PublishRequest {
            target,
            event: Event {
                kind,
                run_id,
                data,
                priority,
            },
            idempotency_key,
        })
    }

    /// Parses a batch body: a JSON array of publish requests, answered per item. The array
    /// itself must be well-formed and hold at most `max_items` items; each item then succeeds
    /// or fails on its own.
    pub fn parse_batch(
        body: &Bytes,
        max_items: usize,
    ) -> Result<Vec<Result<PublishRequest, ParseError>>, ParseError> {
        json::validate(body)?;
        let items = json::array_items(body)?;
        if items.len() > max_items {
            return Err(ParseError::BatchTooLarge { max: max_items });
        }
        Ok(items
            .iter()
            .map(|s| Self::parse_validated(body, &body[s.start..s.end]))
            .collect())
    }
}

/// The envelope `{"user_id": …, "ag_ui": {…}}`: `ag_ui` replaces `type` and `data` (both
/// refused beside it); `run_id`, `priority` and `idempotency_key` mean what they mean for a
/// native publish. See [`crate::ag_ui`].
fn parse_ag_ui(m: &Members<'_>, target: Target, raw: &[u8]) -> Result<PublishRequest, ParseError> {
    for clash in ["type", "data"] {
        if m.raw(clash).is_some() {
            return Err(ParseError::invalid(
                "ag_ui",
                format!("cannot be given with `{clash}`: the AG-UI event is the type and the data"),
            ));
        }
    }
    let ev = AgUiEvent::parse_validated(raw)?;
    let mut event = ag_ui::to_native(&ev, envelope_run_id(m)?)?;
    if let Some(p) = envelope_priority(m)? {
        event.priority = Some(p);
    }
    Ok(PublishRequest {
        target,
        event,
        idempotency_key: envelope_idempotency_key(m)?,
    })
}

fn envelope_run_id(m: &Members<'_>) -> Result<Option<Arc<str>>, ParseError> {
    match m.str("run_id")? {
        Some(r) if r.is_empty() || r.len() > 256 => {
            Err(ParseError::invalid("run_id", "must be 1 to 256 bytes"))
        }
        Some(r) => Ok(Some(Arc::<str>::from(r.as_ref()))),
        None => Ok(None),
    }
}

fn envelope_priority(m: &Members<'_>) -> Result<Option<Priority>, ParseError> {
    match m.str("priority")? {
        Some(p) => Ok(Some(Priority::parse(&p).ok_or_else(|| {
            ParseError::invalid("priority", "must be one of low, normal, critical")
        })?)),
        None => Ok(None),
    }
}

fn envelope_idempotency_key(m: &Members<'_>) -> Result<Option<Arc<str>>, ParseError> {
    match m.str("idempotency_key")? {
        Some(k) if k.is_empty() || k.len() > 128 => Err(ParseError::invalid(
            "idempotency_key",
            "must be 1 to 128 bytes",
        )),
        Some(k) => Ok(Some(Arc::<str>::from(k.as_ref()))),
        None => Ok(None),
    }
}

/// The members a message event's `data` must have: `message_id` (1 to 256 bytes), a string
/// `delta` for `message_delta`, a string `role` if `message_started` gives one.
fn check_message_data(kind: &EventKind, data: &[u8]) -> Result<(), ParseError> {
    let d = Members::scan_validated(data).map_err(|_| ParseError::WrongType {
        field: "data",
        expected: "an object with `message_id`",
    })?;
    let id = d
        .str("message_id")
        .map_err(|_| ParseError::WrongType {
            field: "data.message_id",
            expected: "a string",
        })?
        .ok_or(ParseError::Missing("data.message_id"))?;
    if id.is_empty() || id.len() > 256 {
        return Err(ParseError::invalid(
            "data.message_id",
            "must be 1 to 256 bytes",
        ));
    }
    let string = |field: &'static str, key: &'static str| match d.raw(key) {
        Some(raw) if raw.first() != Some(&b'"') => Err(ParseError::WrongType {
            field,
            expected: "a string",
        }),
        other => Ok(other.is_some()),
    };
    let (field, key, required) = match kind {
        EventKind::MessageDelta => ("data.delta", "delta", true),
        EventKind::MessageStarted => ("data.role", "role", false),
        _ => return Ok(()),
    };
    if !string(field, key)? && required {
        return Err(ParseError::Missing(field));
    }
    Ok(())
}

fn parse_target(m: &Members<'_>) -> Result<Target, ParseError> {
    let user = m.str("user_id")?;
    let channel = m.str("channel")?;
    let broadcast = m.bool("broadcast")?.unwrap_or(false);
    match (user, channel, broadcast) {
        (Some(u), None, false) => Ok(Target::User(
            UserId::new(&u).map_err(|e| ParseError::invalid("user_id", e))?,
        )),
        (None, Some(c), false) => Ok(Target::Channel(
            ChannelName::new(&c).map_err(|e| ParseError::invalid("channel", e))?,
        )),
        (None, None, true) => Ok(Target::Broadcast),
        _ => Err(ParseError::Target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PublishRequest, ParseError> {
        PublishRequest::parse(&Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn user_event_keeps_data_bytes() {
        let r = parse(r#"{"user_id":"u1","type":"agent_started","run_id":"r1","data":{"a": [1, 1.0e3, "\u00e9"]}}"#).unwrap();
        assert_eq!(r.target, Target::User(UserId::new("u1").unwrap()));
        assert_eq!(r.event.kind, EventKind::AgentStarted);
        assert_eq!(r.event.data.as_bytes(), br#"{"a": [1, 1.0e3, "\u00e9"]}"#);
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        assert_eq!(
            parse(r#"{"user_id":"u1","run_id":"r"}"#).unwrap_err(),
            ParseError::Missing("type")
        );
        assert_eq!(
            parse(r#"{"user_id":"u1","type":"agent_started"}"#).unwrap_err(),
            ParseError::Missing("run_id")
        );
        assert_eq!(
            parse(r#"{"user_id":5,"type":"x"}"#).unwrap_err(),
            ParseError::WrongType {
                field: "user_id",
                expected: "a string"
            }
        );
        assert_eq!(parse(r#"{"type":"x"}"#).unwrap_err(), ParseError::Target);
        assert_eq!(
            parse(r#"{"user_id":"u","channel":"c","type":"x"}"#).unwrap_err(),
            ParseError::Target
        );
        assert!(matches!(
            parse(r#"{"user_id":"u","type":"welcome"}"#).unwrap_err(),
            ParseError::Invalid { field: "type", .. }
        ));
        assert!(matches!(
            parse(r#"{"channel":"a*","type":"x"}"#).unwrap_err(),
            ParseError::Invalid {
                field: "channel",
                ..
            }
        ));
        assert_eq!(
            parse("[]").unwrap_err(),
            ParseError::TopLevel { expected: "object" }
        );
        assert!(matches!(parse("{").unwrap_err(), ParseError::Json(_)));
    }

    #[test]
    fn custom_types_need_no_run() {
        let r = parse(r#"{"broadcast":true,"type":"maintenance"}"#).unwrap();
        assert_eq!(r.target, Target::Broadcast);
        assert_eq!(r.event.run_id, None);
        assert_eq!(r.event.data.as_bytes(), b"{}");
    }

    #[test]
    fn batch_is_answered_per_item() {
        let body = Bytes::from_static(br#"[{"user_id":"a","type":"x"}, {"type":"x"}, 3]"#);
        let items = PublishRequest::parse_batch(&body, 10).unwrap();
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err(), &ParseError::Target);
        assert_eq!(
            items[2].as_ref().unwrap_err(),
            &ParseError::TopLevel { expected: "object" }
        );
        assert_eq!(
            PublishRequest::parse_batch(&body, 2).unwrap_err(),
            ParseError::BatchTooLarge { max: 2 }
        );
    }
}
