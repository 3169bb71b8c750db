//! `?protocol=`: what a client connection's frames look like, and the per-connection
//! translation of `?protocol=ag-ui`.
//!
//! | value | frames |
//! |---|---|
//! | absent, `native` | agentcast's own JSON (`docs/protocol.md`), the engine's shared frames as they are |
//! | `ag-ui` | one AG-UI event object per WebSocket text frame or SSE `data:` (`docs/ag-ui.md`) |
//! | anything else | refused: 400 naming the value |
//!
//! # Who pays
//!
//! The engine serializes each event once and fans the same `Bytes` out to every connection.
//! A native connection writes that frame untouched: the only cost of this module on its path
//! is one branch on [`Protocol::Native`] per batch. An AG-UI connection translates each frame
//! in its own write path ([`ws_frame`], [`payload`]): one scan of the frame and one new
//! buffer per frame ([`agentcast_engine::ag_ui::to_ag_ui`], 0.5–1 µs for a ~250-byte frame:
//! `benches/ag_ui.rs`), paid by AG-UI connections only. The engine hands the *same* `Bytes`
//! to every recipient of an event, so [`ws_frame`] keeps the last frame each I/O thread
//! translated: the AG-UI connections one thread writes a broadcast (or a user's event) to
//! share one translation, not one each. The cache is one frame per thread, up to
//! [`CACHE_MAX`] bytes; holding the original keeps its buffer alive, so an equal pointer and
//! length mean the same bytes (translation is a pure function of them). SSE streams
//! translate per stream ([`payload`]). Control frames (ping, pong, close) pass through
//! unchanged.

use std::borrow::Cow;
use std::cell::RefCell;

use agentcast_engine::Frame;
use agentcast_engine::ag_ui::to_ag_ui;
use agentcast_engine::frame::payload_of;
use bytes::Bytes;
use http::StatusCode;

use crate::client::request::{bad_escape, try_query_param};
use crate::http::Refusal;

/// The wire format a client asked for with `?protocol=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Protocol {
    /// agentcast's own JSON (the default).
    #[default]
    Native,
    /// AG-UI events (`?protocol=ag-ui`).
    AgUi,
}

impl Protocol {
    /// `?protocol=` of `query`; absent is [`Protocol::Native`]. An unknown value is a 400
    /// that names it.
    pub(crate) fn from_query(query: &str) -> Result<Protocol, Refusal> {
        match try_query_param(query, "protocol").map_err(|_| bad_escape("protocol"))? {
            None => Ok(Protocol::Native),
            Some(v) => match v.as_ref() {
                "native" => Ok(Protocol::Native),
                "ag-ui" => Ok(Protocol::AgUi),
                other => Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown protocol `{}`: use `ag-ui` or `native`",
                        other.chars().take(64).collect::<String>()
                    ),
                )),
            },
        }
    }
}

/// WebSocket opcode of a text frame.
const TEXT: u8 = 0x1;

/// Frames up to this size are kept in the per-thread translation cache (see the module
/// docs): a bigger one is translated per connection rather than pinned in memory.
const CACHE_MAX: usize = 64 * 1024;

thread_local! {
    /// The last frame this thread translated, and its translation.
    static LAST: RefCell<Option<(Bytes, Bytes)>> = const { RefCell::new(None) };
}

/// The AG-UI form of one complete server WebSocket frame: a text frame becomes a text frame
/// holding the AG-UI event; any other frame (ping, close) is returned as it is. O(frame), or
/// O(1) when this thread translated the same frame last.
pub(crate) fn ws_frame(wire: Bytes) -> Bytes {
    if wire.first().map_or(0, |b| b & 0x0f) != TEXT {
        return wire;
    }
    if wire.len() > CACHE_MAX {
        return Frame::text(&to_ag_ui(payload_of(&wire))).into_bytes();
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((seen, out)) = last.as_ref()
            && seen.as_ptr() == wire.as_ptr()
            && seen.len() == wire.len()
        {
            return out.clone();
        }
        let out = Frame::text(&to_ag_ui(payload_of(&wire))).into_bytes();
        *last = Some((wire, out.clone()));
        out
    })
}

/// The AG-UI form of one frame payload (the JSON an SSE `data:` carries). O(payload).
pub(crate) fn payload(json: &[u8], protocol: Protocol) -> Cow<'_, [u8]> {
    match protocol {
        Protocol::Native => Cow::Borrowed(json),
        Protocol::AgUi => Cow::Owned(to_ag_ui(json)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_values() {
        assert_eq!(Protocol::from_query("").ok(), Some(Protocol::Native));
        assert_eq!(
            Protocol::from_query("token=x&protocol=ag-ui").ok(),
            Some(Protocol::AgUi)
        );
        let refused = Protocol::from_query("protocol=agui").unwrap_err();
        assert!(refused.message.contains("`agui`"), "{}", refused.message);
    }

    #[test]
    fn text_frames_are_translated_and_control_frames_pass() {
        let wire = Frame::text(br#"{"type":"pong"}"#).into_bytes();
        let out = ws_frame(wire);
        assert_eq!(
            payload_of(&out),
            br#"{"type":"CUSTOM","name":"agentcast.pong","value":{"type":"pong"}}"#
        );
        let close = Frame::close(1001, "bye").into_bytes();
        assert_eq!(ws_frame(close.clone()), close);
    }

    #[test]
    fn the_same_frame_is_translated_once_per_thread_and_equal_bytes_elsewhere_again() {
        let wire = Frame::text(br#"{"type":"pong"}"#).into_bytes();
        let a = ws_frame(wire.clone());
        let b = ws_frame(wire.clone());
        assert_eq!(a.as_ptr(), b.as_ptr(), "one translation shared");
        // Another buffer with other bytes: its own translation, not the cached one.
        let other = Frame::text(br#"{"type":"gap","from":1,"to":2}"#).into_bytes();
        let c = ws_frame(other);
        assert!(payload_of(&c).starts_with(br#"{"type":"CUSTOM","name":"agentcast.gap""#));
        // The first frame again, after another: translated again, same bytes.
        let d = ws_frame(wire);
        assert_eq!(d, a);
        assert_ne!(d.as_ptr(), a.as_ptr());
        // A frame past the cache's bound is translated every time.
        let big = format!(r#"{{"type":"pong","pad":"{}"}}"#, "x".repeat(CACHE_MAX));
        let big = Frame::text(big.as_bytes()).into_bytes();
        let (e, f) = (ws_frame(big.clone()), ws_frame(big));
        assert_eq!(e, f);
        assert_ne!(e.as_ptr(), f.as_ptr());
    }
}
