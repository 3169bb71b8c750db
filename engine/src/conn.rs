//! The transport's side of a connection: a handle whose queued frames are drained in batches.
//!
//! # Hand-off
//!
//! The shard worker owns each connection's [`PriorityRing`](crate::ring::PriorityRing); the
//! transport (a socket writer task) never touches it. Between them sits a small lock-free
//! bounded single-producer single-consumer queue ([`crate::handoff`], `write_batch` slots)
//! plus an `AtomicWaker`, all in one cache line besides the slots:
//!
//! 1. The worker pushes a frame straight into the hand-off queue while its ring is empty and
//!    the queue has room, and wakes the transport. This is the fast path of every healthy
//!    connection: no ring, no allocation.
//! 2. Otherwise the frame goes into the ring (where the overflow policy applies) and the
//!    worker sets `backlogged`.
//! 3. The transport [`drain`](Connection::drain_into)s the queue for one vectored write; when
//!    it finds `backlogged` set it clears it and asks the worker for a refill, which moves
//!    ring frames into the queue (and sets `backlogged` again if some remain).
//!
//! Frames in the hand-off queue are committed: they are no longer coalesced or dropped. So a
//! connection holds at most `ring_capacity + write_batch` frames.
//!
//! # Close
//!
//! The engine closes a connection by storing a close code (1013 for a slow consumer that
//! could not take a critical event, 1001 when the hub shuts down) and waking the transport,
//! which should write what it has drained, send a close frame with that code, and drop the
//! handle. Dropping the handle unregisters the connection.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use bytes::Bytes;

use crate::error::SubscribeError;
use crate::event::{ChannelName, UserId};
use crate::handoff::Handoff;
use crate::history::Gap;
use crate::hub::Reply;
use crate::worker::{Command, WorkerShared};

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
    pub seed: Option<Box<crate::broker::Seed>>,
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
    /// transport's [`Connection::drain_into`].
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
        }
    }

    /// Wakes the transport if it is waiting. The worker calls it after pushing frames (or
    /// setting `backlogged`) to this connection **and then** a `fence(SeqCst)`, which one
    /// fence may cover for many connections.
    ///
    /// No wake-up is lost: the transport stores `armed` and fences (SeqCst) before it checks
    /// for frames (Dekker's pattern, see [`Connection::poll_ready`]). Of the two fences, the
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

/// What [`Connection::ready`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Frames can be drained.
    Frames,
    /// The engine closed the connection with this code; drain what is left, then close.
    Closed(u16),
}

/// A registered connection, held by the transport. See the [module docs](self).
///
/// Dropping it unregisters the connection (its queued frames are discarded and counted as
/// drained).
#[derive(Debug)]
pub struct Connection {
    pub(crate) id: ConnId,
    pub(crate) key: usize,
    pub(crate) user: UserId,
    pub(crate) welcome: Welcome,
    pub(crate) shared: Arc<ConnShared>,
    pub(crate) worker: Arc<WorkerShared>,
}

impl Connection {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The user.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// What the engine said at registration.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Moves up to `max` queued frames into `out` (for one vectored write) and returns how
    /// many. Lock-free: pops the hand-off queue, and when the ring has more, sends one refill
    /// request to the worker.
    ///
    /// Takes `&mut self`: a connection's frames have one consumer at a time.
    pub fn drain_into(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        // SAFETY: `&mut self` on the only handle that pops this queue (`Connection` is not
        // `Clone`; the worker never pops): one consumer at a time.
        #[allow(unsafe_code)]
        let n = unsafe { self.shared.handoff.pop_into(out, max) };
        // The health canary's frames are not counted as handed, so not as drained either.
        if n > 0 && !self.user.is_internal() {
            self.worker
                .counters
                .drained
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        // AcqRel: Acquire pairs with the worker's Release store, so the frames it moved into
        // the hand-off queue before setting the flag are visible to the next drain.
        if self.shared.backlogged.swap(false, Ordering::AcqRel) {
            let _ = self.worker.send(Command::Refill {
                key: self.key,
                id: self.id,
            });
        }
        n
    }

    /// Takes the publish time ([`mono_us`](crate::health::mono_us)) of the oldest frame
    /// queued since the last call, if any: the transport records `mono_us() - stamp` after
    /// writing what it drained (publish → socket-write latency).
    pub fn take_publish_stamp(&self) -> Option<u64> {
        match self.shared.publish_stamp.swap(0, Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Polls for frames or a close. Registers the task's waker first and checks after, so a
    /// push between the two is never missed.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Readiness> {
        self.shared.waker.register(cx.waker());
        // Dekker's pattern with the worker's `fence; notify` (see `ConnShared::notify`).
        self.shared.armed.store(true, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.shared.handoff.is_empty() || self.shared.backlogged.load(Ordering::Acquire) {
            return Poll::Ready(Readiness::Frames);
        }
        match self.shared.close.load(Ordering::Acquire) {
            0 => Poll::Pending,
            code => Poll::Ready(Readiness::Closed(code)),
        }
    }

    /// Waits for frames or a close.
    pub async fn ready(&self) -> Readiness {
        poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// The close code the engine asked for, if any.
    pub fn close_code(&self) -> Option<u16> {
        match self.shared.close.load(Ordering::Acquire) {
            0 => None,
            c => Some(c),
        }
    }

    /// Confirms every event of this user up to `seq`: acknowledged events are never replayed
    /// again and critical ones stop being tracked. Fire-and-forget.
    pub fn ack(&self, seq: u64) {
        let _ = self.worker.send(Command::Ack {
            user: self.user.clone(),
            seq,
        });
    }

    /// Subscribes this connection to `channel`. Subscribing twice is not an error.
    pub fn subscribe(&self, channel: ChannelName) -> Reply<Result<(), SubscribeError>> {
        let (tx, reply) = Reply::channel();
        if self
            .worker
            .send(Command::Subscribe {
                key: self.key,
                id: self.id,
                channel,
                reply: tx,
            })
            .is_err()
        {
            return Reply::ready(Err(SubscribeError::Closed));
        }
        reply
    }

    /// Ends a subscription (no-op when not subscribed). Fire-and-forget.
    pub fn unsubscribe(&self, channel: ChannelName) {
        let _ = self.worker.send(Command::Unsubscribe {
            key: self.key,
            id: self.id,
            channel,
        });
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The worker discards what is left in the hand-off queue when it handles this, so
        // frames it pushes in between are accounted for too.
        let _ = self.worker.send(Command::Disconnect {
            key: self.key,
            id: self.id,
        });
    }
}
