//! What the two client transports, WebSocket ([`crate::ws`]) and server-sent events
//! ([`crate::sse`]), share, so that a client gets the same authentication, limits, resume
//! and lifecycle whichever it uses:
//!
//! - [`request`]: the sans-IO pieces of a connect request (the token from `Authorization:
//!   Bearer` or `?token=`, `?last_seq=`, query-string decoding);
//! - [`admit`]: admission after authentication (shutdown, failed node, `max_connections`,
//!   the tier's `connections_per_user`, the broker's open, the engine registration) and the
//!   guards a connection holds while it lives;
//! - [`protocol`]: `?protocol=` (native or `ag-ui`) and the per-connection AG-UI
//!   translation of frames;
//! - [`lifecycle`]: what a connection task does the same way on both transports (the
//!   `welcome`, the token deadline, engine close reasons, channel subscriptions and their
//!   broker watches, the shutdown grace signal).
//!
//! Only framing differs: WebSocket frames on an upgraded socket, or `text/event-stream`
//! chunks in a hyper response body.

pub(crate) mod admit;
pub(crate) mod lifecycle;
pub(crate) mod protocol;
pub(crate) mod request;
