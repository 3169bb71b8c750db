//! The WebSocket transport: the upgrade ([`handshake`]), the sans-IO frame decoder
//! ([`codec`]), per-connection abuse guards ([`guard`]) and the connection task
//! ([`session`](self::session)).
//!
//! Server → client frames are never encoded here: the engine hands out complete, unmasked
//! WebSocket frames (events serialized once and shared by every recipient), and replies
//! (`welcome`, `pong`, `error`, close) are built with
//! [`agentcast_engine::Frame`]. This layer only decodes what clients send.

pub mod codec;
pub mod guard;
pub(crate) mod handshake;
pub(crate) mod session;
pub(crate) mod sink;
