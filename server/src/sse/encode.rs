//! Engine frames → `text/event-stream` bytes (the [WHATWG event stream format]), sans-IO.
//!
//! The engine hands every transport the same complete WebSocket frames, serialized once per
//! event; this layer strips the header ([`payload_of`]) and writes, per text frame:
//!
//! ```text
//! id: <seq>          only when the JSON has a top-level "seq" (user events, merged deltas)
//! event: <type>      the JSON's top-level "type"
//! data: <payload>    the WebSocket payload, unchanged
//! <blank line>
//! ```
//!
//! Channel and broadcast events, `welcome` and `gap` have no seq, so no `id:` line: an
//! `EventSource` keeps the last id it saw, and its `Last-Event-ID` on reconnect is the last
//! *user* event received, which is what a resume needs.
//!
//! A payload holding a line break (a publisher's `data` may be JSON spread over lines) is
//! written as one `data:` line per line; a client joins them with `\n`, so the JSON it reads
//! is the same value (a `\r` between tokens comes back as `\n`). A WebSocket close frame
//! (opcode 8) ends the stream: it is returned as [`Close`] for the caller to write as
//! `event: close`. Other control frames are skipped.
//!
//! Cost: one scan of each frame's JSON per connection (to read `type` and `seq`), which the
//! WebSocket transport does not pay; no allocation besides the output buffer.
//!
//! [WHATWG event stream format]: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

use std::borrow::Cow;

use agentcast_engine::frame::payload_of;
use bytes::{BufMut, BytesMut};
use serde::Deserialize;

use crate::client::protocol::{self, Protocol};

/// A close found in the drained frames (or decided by the connection task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    /// The WebSocket close code (1001, 1013, 4001, ...).
    pub(crate) code: u16,
    /// Why, in words.
    pub(crate) reason: String,
}

/// The members of a frame's JSON that the event stream needs; every other member is skipped.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
}

/// WebSocket opcodes of the frames the engine queues.
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;

/// Appends the event of one complete server frame (`wire`) to `out`; a close frame is not
/// written but returned. O(frame length).
pub(crate) fn frame(wire: &[u8], out: &mut BytesMut, protocol: Protocol) -> Option<Close> {
    let opcode = wire.first().map_or(0, |b| b & 0x0f);
    let payload = payload_of(wire);
    match opcode {
        TEXT => {
            event_as(payload, out, protocol);
            None
        }
        CLOSE => Some(close_of(payload)),
        _ => None,
    }
}

/// Appends `json` (a server message or an engine frame's payload) as one event in
/// `protocol`: native as [`event`] writes it; AG-UI as the AG-UI event's `data:` (with
/// `id:` from its `seq`) and no `event:` line, so an `EventSource`'s `onmessage` and AG-UI's
/// own SSE parsers (which read `data:` only) both see every event.
pub(crate) fn event_as(json: &[u8], out: &mut BytesMut, protocol: Protocol) {
    match protocol {
        Protocol::Native => event(json, out),
        Protocol::AgUi => {
            let translated = protocol::payload(json, protocol);
            if let Some(seq) = serde_json::from_slice::<Head<'_>>(&translated)
                .ok()
                .and_then(|h| h.seq)
            {
                out.put_slice(b"id: ");
                out.put_slice(seq.to_string().as_bytes());
                out.put_u8(b'\n');
            }
            data(&translated, out);
        }
    }
}

/// Appends `json` as one event: `id:` from its `seq`, `event:` from its `type`.
pub(crate) fn event(json: &[u8], out: &mut BytesMut) {
    // A frame that is not a JSON object (never the case for the engine's) still goes out, as
    // an unnamed event, rather than being lost.
    let head = serde_json::from_slice::<Head<'_>>(json).ok();
    if let Some(seq) = head.as_ref().and_then(|h| h.seq) {
        out.put_slice(b"id: ");
        out.put_slice(seq.to_string().as_bytes());
        out.put_u8(b'\n');
    }
    if let Some(kind) = head.as_ref().and_then(|h| h.kind.as_deref()) {
        // Event types are validated names (`EventKind::parse`); a type that could break the
        // line structure is left out (the client sees a `message` event) rather than sent.
        if !kind.is_empty() && !kind.bytes().any(|b| b == b'\r' || b == b'\n') {
            out.put_slice(b"event: ");
            out.put_slice(kind.as_bytes());
            out.put_u8(b'\n');
        }
    }
    data(json, out);
}

/// Appends `event: close` with data `{"code":N,"reason":"..."}`; in AG-UI mode the data is
/// `{"type":"CUSTOM","name":"agentcast.close","value":{"code":N,"reason":"..."}}` and there
/// is no `event:` line.
pub(crate) fn close_event(close: &Close, out: &mut BytesMut, protocol: Protocol) {
    let value = serde_json::json!({"code": close.code, "reason": close.reason});
    match protocol {
        Protocol::Native => {
            out.put_slice(b"event: close\n");
            data(value.to_string().as_bytes(), out);
        }
        Protocol::AgUi => {
            let json =
                serde_json::json!({"type": "CUSTOM", "name": "agentcast.close", "value": value});
            data(json.to_string().as_bytes(), out);
        }
    }
}

/// Appends `: <text>` and a blank line: a comment, which `EventSource` ignores (heartbeats).
pub(crate) fn comment(text: &str, out: &mut BytesMut) {
    out.put_slice(b": ");
    out.put_slice(text.as_bytes());
    out.put_slice(b"\n\n");
}

/// Appends `retry: <ms>` and a blank line: how long an `EventSource` waits to reconnect.
pub(crate) fn retry(ms: u64, out: &mut BytesMut) {
    out.put_slice(b"retry: ");
    out.put_slice(ms.to_string().as_bytes());
    out.put_slice(b"\n\n");
}

/// `data:` lines of `payload` (one per line of it) and the blank line ending the event.
fn data(payload: &[u8], out: &mut BytesMut) {
    let mut rest = payload;
    loop {
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        out.put_slice(b"data: ");
        out.put_slice(&rest[..end]);
        out.put_u8(b'\n');
        if end == rest.len() {
            break;
        }
        // `\r\n` is one line break.
        let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.put_u8(b'\n');
}

/// The code and reason of a close frame's payload (RFC 6455 §5.5.1); an empty one is 1005.
fn close_of(payload: &[u8]) -> Close {
    match payload {
        [hi, lo, reason @ ..] => Close {
            code: u16::from_be_bytes([*hi, *lo]),
            reason: String::from_utf8_lossy(reason).into_owned(),
        },
        _ => Close {
            code: 1005,
            reason: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use agentcast_engine::Frame;
    use agentcast_engine::frame::Opcode;

    use super::*;

    fn encode(json: &str) -> String {
        let mut out = BytesMut::new();
        assert_eq!(
            frame(
                Frame::text(json.as_bytes()).as_bytes(),
                &mut out,
                Protocol::Native
            ),
            None
        );
        String::from_utf8(out.to_vec()).expect("utf-8")
    }

    #[test]
    fn a_user_event_has_id_event_and_the_payload_as_data() {
        let json = r#"{"type":"tool_executing","seq":42,"run_id":"r","data":{"seq":1}}"#;
        assert_eq!(
            encode(json),
            format!("id: 42\nevent: tool_executing\ndata: {json}\n\n")
        );
    }

    #[test]
    fn a_channel_event_has_no_id_even_when_its_data_holds_a_seq() {
        let json = r#"{"type":"custom.x","channel":"job:1","data":{"seq":9}}"#;
        assert_eq!(encode(json), format!("event: custom.x\ndata: {json}\n\n"));
    }

    #[test]
    fn a_merged_delta_passes_through_with_its_last_seq_as_id() {
        let json = r#"{"type":"message_delta","seq":12,"seq_from":10,"data":{"message_id":"m","delta":"abc"}}"#;
        assert_eq!(
            encode(json),
            format!("id: 12\nevent: message_delta\ndata: {json}\n\n")
        );
    }

    #[test]
    fn line_breaks_in_the_payload_become_data_lines() {
        let json = "{\"type\":\"t\",\r\n\"data\":\n{}\r}";
        assert_eq!(
            encode(json),
            "event: t\ndata: {\"type\":\"t\",\ndata: \"data\":\ndata: {}\ndata: }\n\n"
        );
    }

    #[test]
    fn a_type_with_a_line_break_is_left_out() {
        let json = r#"{"type":"a\nb"}"#;
        assert_eq!(encode(json), format!("data: {json}\n\n"));
    }

    #[test]
    fn a_close_frame_is_returned_not_written() {
        let mut out = BytesMut::new();
        let close = frame(
            Frame::close(1013, "too slow").as_bytes(),
            &mut out,
            Protocol::Native,
        );
        assert!(out.is_empty());
        let close = close.expect("close");
        assert_eq!((close.code, close.reason.as_str()), (1013, "too slow"));
        close_event(&close, &mut out, Protocol::Native);
        assert_eq!(
            &out[..],
            b"event: close\ndata: {\"code\":1013,\"reason\":\"too slow\"}\n\n"
        );
        let mut out = BytesMut::new();
        assert_eq!(
            frame(
                Frame::new(Opcode::Ping, b"").as_bytes(),
                &mut out,
                Protocol::Native
            ),
            None
        );
        assert!(out.is_empty());
    }

    #[test]
    fn ag_ui_mode_writes_the_ag_ui_event_with_its_seq_as_id_and_no_event_line() {
        let json = r#"{"type":"message_delta","seq":12,"seq_from":10,"data":{"message_id":"m","delta":"abc"}}"#;
        let mut out = BytesMut::new();
        frame(
            Frame::text(json.as_bytes()).as_bytes(),
            &mut out,
            Protocol::AgUi,
        );
        assert_eq!(
            &out[..],
            &b"id: 12\ndata: {\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m\",\"delta\":\"abc\",\"seq\":12,\"seq_from\":10}\n\n"[..]
        );
        let mut out = BytesMut::new();
        let close = Close {
            code: 1013,
            reason: "too slow".to_owned(),
        };
        close_event(&close, &mut out, Protocol::AgUi);
        assert_eq!(
            &out[..],
            &b"data: {\"name\":\"agentcast.close\",\"type\":\"CUSTOM\",\"value\":{\"code\":1013,\"reason\":\"too slow\"}}\n\n"[..]
        );
    }
}
