//! Parsing of client → server messages (the text of one WebSocket message).
//!
//! ```json
//! {"type":"ack","seq":41}
//! {"type":"subscribe","channel":"job:42"}
//! {"type":"unsubscribe","channel":"job:42"}
//! {"type":"ping"}
//! ```
//!
//! Anything else (not JSON, not an object, unknown `type`, a field of the wrong type, a bad
//! channel name) is a [`ParseError`] naming the problem; the transport answers it with an
//! `error` message and keeps the connection open. Unknown extra fields are ignored.

use crate::error::ParseError;
use crate::event::ChannelName;
use crate::json::Members;

/// A message a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Confirms every event of this user up to and including `seq`.
    Ack {
        /// The highest seq confirmed.
        seq: u64,
    },
    /// Subscribes this connection to a channel.
    Subscribe {
        /// The channel.
        channel: ChannelName,
    },
    /// Ends a subscription of this connection.
    Unsubscribe {
        /// The channel.
        channel: ChannelName,
    },
    /// Asks for a `pong`.
    Ping,
}

impl ClientMessage {
    /// Parses one client message.
    pub fn parse(input: &[u8]) -> Result<ClientMessage, ParseError> {
        let m = Members::parse(input)?;
        let ty = m.str("type")?.ok_or(ParseError::Missing("type"))?;
        let channel = || -> Result<ChannelName, ParseError> {
            let c = m.str("channel")?.ok_or(ParseError::Missing("channel"))?;
            ChannelName::new(&c).map_err(|e| ParseError::invalid("channel", e))
        };
        match ty.as_ref() {
            "ack" => Ok(ClientMessage::Ack {
                seq: m.u64("seq")?.ok_or(ParseError::Missing("seq"))?,
            }),
            "subscribe" => Ok(ClientMessage::Subscribe {
                channel: channel()?,
            }),
            "unsubscribe" => Ok(ClientMessage::Unsubscribe {
                channel: channel()?,
            }),
            "ping" => Ok(ClientMessage::Ping),
            other => {
                let mut shown: String = other.chars().take(64).collect();
                if shown.len() < other.len() {
                    shown.push('…');
                }
                Err(ParseError::UnknownType(shown))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_parses() {
        assert_eq!(
            ClientMessage::parse(br#"{"type":"ack","seq":7}"#),
            Ok(ClientMessage::Ack { seq: 7 })
        );
        assert_eq!(
            ClientMessage::parse(br#"{"type":"ping","extra":[1]}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            ClientMessage::parse(br#"{"channel":"job:1","type":"subscribe"}"#),
            Ok(ClientMessage::Subscribe {
                channel: ChannelName::new("job:1").unwrap()
            })
        );
    }

    #[test]
    fn bad_messages_name_the_problem() {
        assert!(matches!(
            ClientMessage::parse(b"hello"),
            Err(ParseError::Json(_))
        ));
        assert_eq!(
            ClientMessage::parse(b"[1]"),
            Err(ParseError::TopLevel { expected: "object" })
        );
        assert_eq!(
            ClientMessage::parse(br#"{"type":"nope"}"#),
            Err(ParseError::UnknownType("nope".into()))
        );
        assert_eq!(
            ClientMessage::parse(br#"{"type":"ack"}"#),
            Err(ParseError::Missing("seq"))
        );
        assert!(matches!(
            ClientMessage::parse(br#"{"type":"ack","seq":"1"}"#),
            Err(ParseError::WrongType { field: "seq", .. })
        ));
        assert!(matches!(
            ClientMessage::parse(br#"{"type":"subscribe","channel":""}"#),
            Err(ParseError::Invalid {
                field: "channel",
                ..
            })
        ));
    }
}
