//! What a connection's shard and its transport share, below the shard: the connection's id,
//! its options, the welcome, the close codes and [`ConnShared`] (the hand-off line). See the
//! [`conn`](crate::conn) docs.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};

use atomic_waker::AtomicWaker;

use crate::handoff::Handoff;
use crate::history::Gap;

/// A connection's id, unique within a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// WebSocket close codes the engine asks for (RFC 6455 §7.4.1).
pub mod close_code {
    /// "1001 indicates that an endpoint is going away, such as a server going down".
    pub const GOING_AWAY: u16 = 1001;
    /// "1013 Try Again Later": the connection could not keep up with a critical event.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// "1011 indicates that a server is terminating the connection because it encountered an
    /// unexpected condition".
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Where a new connection's delivery starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resume {
    /// After the user's ack cursor: events published while the user had no connection, and
    /// events delivered but never acknowledged, are replayed.
    #[default]
    FromAck,
    /// After this seq (`?last_seq=N`); a [`Gap`] is reported first when some are gone.
    After(u64),
}

/// Per-connection options given at registration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Where delivery starts. Default: [`Resume::FromAck`].
    pub resume: Resume,
    /// Channel subscriptions this connection may hold. Default: 64.
    pub max_subscriptions: usize,
    /// Overrides the user's history size (per-tier limits). Default: the hub's.
    pub history_len: Option<usize>,
    /// Cluster mode: what the broker read for this connection (see [`crate::broker`]); the
    /// replay comes from it instead of the shard's own history. Default: none.
    pub seed: Option<Box<crate::broker::seed::Seed>>,
    /// Replays in seq order only. By default a replay sends the critical events first, then
    /// the rest, each in seq order (a client learns of every run's start and end first); a
    /// protocol whose streams are only valid in order (AG-UI: a `TOOL_CALL_END` before its
    /// `TOOL_CALL_ARGS` fails verification) sets this. Default: `false`.
    pub replay_in_seq_order: bool,
    /// With [`Resume::FromAck`]: when the ack cursor is inside a run (its `agent_started` is
    /// held at or below the cursor and its end is not), the replay starts at that
    /// `agent_started` instead, so the connection's stream begins with the run's start: the
    /// AG-UI join prelude (`docs/ag-ui.md`). Events of the run the user already acknowledged
    /// are sent again (merged deltas as one frame). Default: `false`.
    pub rewind_to_open_run: bool,
    /// An internal connection (the health canary): sent no broadcasts, left out of gauges.
    pub(crate) internal: bool,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            resume: Resume::FromAck,
            max_subscriptions: 64,
            history_len: None,
            seed: None,
            replay_in_seq_order: false,
            rewind_to_open_run: false,
            internal: false,
        }
    }
}

/// What the engine tells a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// The connection's id.
    pub conn_id: ConnId,
    /// The latest seq of the user (the seq base when nothing was published yet).
    pub last_seq: u64,
    /// Events replayed into this connection's queue.
    pub replayed: usize,
    /// The gap reported first, if the resume asked for events no longer held.
    pub gap: Option<Gap>,
    /// The user's open connections, this one included.
    pub user_connections: usize,
}

/// State shared by a connection's worker (producer) and transport (consumer).
///
/// Laid out in one 64-byte line (the slots are a separate allocation): a push to a healthy
/// connection touches this line and one slot, and the fan-out loop prefetches both.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct ConnShared {
    /// Committed frames for the transport. Pushed only by the worker, popped only by the
    /// transport's [`Connection::drain_into`](crate::Connection::drain_into).
    pub(crate) handoff: Handoff,
    /// [`mono_us`](crate::health::mono_us) of the publish of the oldest frame queued since
    /// the transport last took the stamp (0: none). The worker stores it only when it reads
    /// 0 (a plain load per recipient, on a line it touches anyway); the transport swaps it
    /// to 0 when it drains. A push racing the swap may lose its stamp: this is a sample of
    /// write latency, not a count.
    pub(crate) publish_stamp: AtomicU64,
    /// The transport's task, woken after every push and on close.
    pub(crate) waker: AtomicWaker,
    /// 0 while open; else the close code the engine asks for. Written once by the worker
    /// (Release), read by the transport (Acquire) so frames queued before the close are seen.
    pub(crate) close: AtomicU16,
    /// Set by the transport when it is about to wait (it registered its waker); cleared by
    /// the worker when it wakes it. Lets the worker skip the waker's read-modify-write for
    /// a transport that is busy anyway. See [`ConnShared::notify`].
    pub(crate) armed: AtomicBool,
    /// Set by the worker when its ring holds frames; cleared by the transport, which then
    /// asks for a refill. Release/Acquire: a transport that sees `true` also sees the frames
    /// the worker pushed to the hand-off queue before setting it.
    pub(crate) backlogged: AtomicBool,
    /// Who may write to the socket: the transport, nobody, or the worker inside a direct
    /// write (see [`crate::sink`]). Starts with the transport.
    pub(crate) writer: AtomicU8,
}

// Fields ordered so the whole struct is one cache line (repr(C): as written).
const _: () = assert!(size_of::<ConnShared>() == 64);

impl ConnShared {
    pub(crate) fn new(write_batch: usize) -> ConnShared {
        ConnShared {
            handoff: Handoff::new(write_batch),
            backlogged: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            publish_stamp: AtomicU64::new(0),
            close: AtomicU16::new(0),
            waker: AtomicWaker::new(),
            writer: AtomicU8::new(crate::sink::TRANSPORT),
        }
    }

    /// Wakes the transport if it is waiting. The worker calls it after pushing frames (or
    /// setting `backlogged`) to this connection **and then** a `fence(SeqCst)`, which one
    /// fence may cover for many connections.
    ///
    /// No wake-up is lost: the transport stores `armed` and fences (SeqCst) before it checks
    /// for frames (Dekker's pattern, see [`Connection::poll_ready`](crate::Connection::poll_ready)). Of the two fences, the
    /// one that comes second in their single total order sees the other side's store: either
    /// the transport sees the frames and does not wait, or the worker sees `armed` and wakes
    /// it. Clearing `armed` is always followed by a wake, so a clear racing a new `armed`
    /// store never strands the transport.
    #[inline]
    pub(crate) fn notify(&self) {
        if self.armed.load(Ordering::Relaxed) {
            self.armed.store(false, Ordering::Relaxed);
            self.waker.wake();
        }
    }

    /// Asks the transport to close with `code` (first code wins).
    pub(crate) fn close(&self, code: u16) {
        let _ = self
            .close
            .compare_exchange(0, code, Ordering::Release, Ordering::Relaxed);
        self.waker.wake();
    }
}
