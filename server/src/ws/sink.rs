//! The WebSocket transport's [`SocketSink`]: the connection's TCP stream, shared with the
//! shard worker so it can write an event itself when the session released the socket (see
//! `agentcast_engine::sink` for the protocol, [`super::session`] for when the session claims
//! and releases).
//!
//! The stream is shared by `Arc`, so its descriptor stays open until both the session and
//! the worker (which drops the sink when the connection is unregistered) let go: a direct
//! write can never reach a descriptor number reused by another connection.
//!
//! Writes go through tokio's `try_write`, which is safe from any thread: it checks the I/O
//! driver's readiness first (no system call when the socket is known to be full) and clears
//! it on `WouldBlock`, so the session's next `writable().await` waits for real room.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use agentcast_engine::SocketSink;
use agentcast_engine::health::mono_us;
use tokio::net::TcpStream;

use crate::metrics::ServerMetrics;

/// See the [module docs](self).
pub(crate) struct TcpSink {
    pub(crate) stream: Arc<TcpStream>,
    pub(crate) metrics: Arc<ServerMetrics>,
}

impl SocketSink for TcpSink {
    fn try_write(&self, frame: &[u8]) -> io::Result<usize> {
        self.stream.try_write(frame)
    }

    fn written(&self, frames: u64, born_us: u64) {
        self.metrics.frames_written.fetch_add(frames, Relaxed);
        self.metrics
            .latency
            .observe_us(mono_us().saturating_sub(born_us));
    }
}
