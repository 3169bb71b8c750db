//! The transport's handle of a registered connection ([`Connection`]) and of one being
//! registered ([`Connecting`]). See the [`conn`](crate::conn) docs.

use std::future::Future;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::command::Command;
use crate::conn::shared::{ConnId, ConnShared, Welcome};
use crate::error::{HubClosed, SubscribeError};
use crate::event::{ChannelName, UserId};
use crate::reply::{Reply, ReplyInner};
use crate::worker::WorkerShared;

/// What [`Connection::ready`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Frames can be drained.
    Frames,
    /// The engine closed the connection with this code; drain what is left, then close.
    Closed(u16),
}

/// A registered connection, held by the transport. See the [module docs](crate::conn).
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

    /// Lets the shard's worker write frames to this connection's socket itself while the
    /// transport has [released](Connection::release_socket) it (see [`crate::sink`]). A
    /// transport that attaches a sink must [claim](Connection::claim_socket) the socket
    /// before it drains or writes anything, and release it only when everything it holds is
    /// written. Fire-and-forget; attaching twice replaces the sink.
    pub fn attach_sink(&self, sink: Arc<dyn crate::sink::SocketSink>) {
        let _ = self.worker.send(Command::AttachSink {
            key: self.key,
            id: self.id,
            sink,
        });
    }

    /// Takes the socket back from the worker (waiting out a direct write in progress, one
    /// non-blocking system call) and drains up to `max` frames into `out`, as
    /// [`drain_into`](Connection::drain_into). After it, the worker writes nothing to the
    /// socket until [`release_socket`](Connection::release_socket). A connection starts
    /// claimed; claiming twice is harmless.
    ///
    /// Drains at once because the front of the queue may be the rest of a frame the worker
    /// wrote in part: it must go out before anything the transport writes of its own.
    pub fn claim_socket(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        crate::sink::transport_claim(&self.shared.writer);
        self.drain_into(out, max)
    }

    /// Lets the worker write to the socket directly again. Call only when every frame drained
    /// and every frame of the transport's own (pongs, pings, errors) is written, and never
    /// after a close frame.
    pub fn release_socket(&self) {
        crate::sink::transport_release(&self.shared.writer);
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

/// A connection being registered; resolves to the transport's [`Connection`].
#[derive(Debug)]
#[must_use = "a Connecting does nothing unless awaited or waited on"]
pub struct Connecting {
    pub(crate) reply: Reply<(usize, Welcome)>,
    pub(crate) pending: Option<(UserId, Arc<ConnShared>, Arc<WorkerShared>)>,
}

impl Connecting {
    fn finish(&mut self, (key, welcome): (usize, Welcome)) -> Result<Connection, HubClosed> {
        let (user, shared, worker) = self.pending.take().ok_or(HubClosed)?;
        Ok(Connection {
            id: welcome.conn_id,
            key,
            user,
            welcome,
            shared,
            worker,
        })
    }

    /// Blocks until registered. See [`Reply::wait`] (same panics).
    pub fn wait(mut self) -> Result<Connection, HubClosed> {
        let reply = std::mem::replace(&mut self.reply, Reply::ready((0, dummy_welcome())));
        let v = reply.wait()?;
        self.finish(v)
    }
}

impl Drop for Connecting {
    /// A registration nobody will receive is undone: closing the reply makes the worker
    /// unregister when it answers later, and an answer that already arrived is unregistered
    /// here.
    fn drop(&mut self) {
        let Some((_, _, worker)) = self.pending.take() else {
            return;
        };
        if let ReplyInner::Pending(rx) = &mut self.reply.inner {
            rx.close();
            if let Ok((key, welcome)) = rx.try_recv() {
                let _ = worker.send(Command::Disconnect {
                    key,
                    id: welcome.conn_id,
                });
            }
        }
    }
}

fn dummy_welcome() -> Welcome {
    Welcome {
        conn_id: ConnId(0),
        last_seq: 0,
        replayed: 0,
        gap: None,
        user_connections: 0,
    }
}

impl Future for Connecting {
    type Output = Result<Connection, HubClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match Pin::new(&mut this.reply).poll(cx) {
            Poll::Ready(Ok(v)) => Poll::Ready(this.finish(v)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}
