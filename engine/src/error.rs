//! Errors of the engine, one enum per operation, each variant saying what the caller should do.

use thiserror::Error;

/// Why a name (user id, channel, custom event type) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidName {
    /// The name is empty.
    #[error("must not be empty")]
    Empty,
    /// The name is longer than allowed.
    #[error("must be at most {max} bytes")]
    TooLong {
        /// The limit in bytes.
        max: usize,
    },
    /// The name holds a character outside its alphabet.
    #[error("contains a character that is not allowed")]
    BadCharacter,
    /// The name is reserved for server messages.
    #[error("is reserved for server messages")]
    Reserved,
}

/// Why untrusted JSON (a publish body or a client message) was refused.
///
/// Every variant that concerns a field names it, so an HTTP 400 or a client `error` message
/// can tell the sender exactly what to fix. Parsing never panics and never allocates more than
/// a small multiple of the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The bytes are not one well-formed JSON value.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// Arrays and objects nest deeper than [`crate::json::MAX_DEPTH`].
    #[error("JSON nests deeper than {max} levels")]
    TooDeep {
        /// The nesting limit.
        max: usize,
    },
    /// The top level is not what the message requires.
    #[error("expected a JSON {expected} at the top level")]
    TopLevel {
        /// `object` or `array`.
        expected: &'static str,
    },
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field appears twice at the top level.
    #[error("duplicate field `{0}`")]
    Duplicate(String),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be, in words.
        expected: &'static str,
    },
    /// A field has the right type but an unacceptable value.
    #[error("field `{field}` {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Exactly one of `user_id`, `channel` and `broadcast: true` must be given.
    #[error("exactly one target is required: `user_id`, `channel` or `broadcast: true`")]
    Target,
    /// A client message has a `type` the server does not know.
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    /// A batch holds more items than allowed.
    #[error("batch holds more than {max} items")]
    BatchTooLarge {
        /// The limit.
        max: usize,
    },
}

impl ParseError {
    pub(crate) fn invalid(field: &'static str, err: impl std::fmt::Display) -> ParseError {
        ParseError::Invalid {
            field,
            reason: err.to_string(),
        }
    }
}

/// The hub has shut down; the operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the hub has shut down")]
pub struct HubClosed;

/// Why a publish was refused. Nothing was published: no seq was assigned, nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The hub has shut down (or is shutting down).
    #[error("the hub has shut down")]
    Closed,
    /// A shard's command queue is full: the engine is overloaded. Retry later (the server
    /// answers 503).
    #[error(
        "the engine is overloaded: a shard's command queue holds its maximum of {capacity} commands; retry later"
    )]
    Overloaded {
        /// The configured bound ([`HubConfig::command_queue`](crate::HubConfig::command_queue)).
        capacity: usize,
    },
}

impl From<HubClosed> for PublishError {
    fn from(_: HubClosed) -> PublishError {
        PublishError::Closed
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubscribeError {
    /// The connection already holds its maximum number of subscriptions.
    #[error("subscription limit of {max} reached")]
    Limit {
        /// The per-connection limit.
        max: usize,
    },
    /// The connection is closed.
    #[error("the connection is closed")]
    Closed,
}
