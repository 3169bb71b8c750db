//! The answers of operations: [`Reply`] (one worker's), [`PublishReply`] (one shard's for a
//! user event, every shard's for a channel event or broadcast) and the [`Receipt`] of a
//! publish.
//!
//! Operations that answer (a [`Receipt`], a [`Welcome`](crate::Welcome)) return a [`Reply`]:
//! await it from async code, call [`Reply::wait`] from a plain thread, or drop it to fire and
//! forget (the operation still happens). A reply resolves to [`HubClosed`] if the hub shut
//! down first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::HubClosed;

/// Polls of [`Reply::wait`] before it sleeps: about 26 µs of `spin_loop` on the 2-core
/// development machine (25.7 ns per `pause`).
const WAIT_SPINS: u32 = 1024;

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The user event's seq (`None` for channel and broadcast events).
    pub seq: Option<u64>,
    /// Connections the event was queued to.
    pub connections: usize,
}

/// The answer to an operation, delivered by a shard worker. See the [module docs](crate::hub#replies).
#[derive(Debug)]
#[must_use = "a Reply does nothing unless awaited or waited on; drop it explicitly to fire and forget"]
pub struct Reply<T> {
    pub(crate) inner: ReplyInner<T>,
}

#[derive(Debug)]
pub(crate) enum ReplyInner<T> {
    Pending(oneshot::Receiver<T>),
    Ready(Option<T>),
}

impl<T> Reply<T> {
    pub(crate) fn channel() -> (oneshot::Sender<T>, Reply<T>) {
        let (tx, rx) = oneshot::channel();
        (
            tx,
            Reply {
                inner: ReplyInner::Pending(rx),
            },
        )
    }

    pub(crate) fn ready(value: T) -> Reply<T> {
        Reply {
            inner: ReplyInner::Ready(Some(value)),
        }
    }

    /// Blocks the current thread until the answer arrives.
    ///
    /// # Panics
    ///
    /// When called from inside an asynchronous runtime (await the reply there instead), once
    /// it is about to sleep: an answer that arrives within the first microseconds, while
    /// it polls, is returned before that check.
    pub fn wait(self) -> Result<T, HubClosed> {
        match self.inner {
            ReplyInner::Pending(mut rx) => {
                // A shard answers a publish in microseconds. Poll for a while before
                // sleeping, which costs a futex wake-up on each side: the criterion receipt
                // bench (`per_user/publish_one_user…_with_receipt`) went from 27-38 µs per
                // round trip to 9-12 µs with this poll.
                for _ in 0..WAIT_SPINS {
                    match rx.try_recv() {
                        Ok(v) => return Ok(v),
                        Err(oneshot::error::TryRecvError::Closed) => return Err(HubClosed),
                        Err(oneshot::error::TryRecvError::Empty) => std::hint::spin_loop(),
                    }
                }
                rx.blocking_recv().map_err(|_| HubClosed)
            }
            ReplyInner::Ready(v) => v.ok_or(HubClosed),
        }
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T, HubClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Reply` is Unpin: `oneshot::Receiver` and `Option<T>` are moved only by value here.
        match &mut self.get_mut().inner {
            ReplyInner::Pending(rx) => Pin::new(rx).poll(cx).map_err(|_| HubClosed),
            ReplyInner::Ready(v) => Poll::Ready(v.take().ok_or(HubClosed)),
        }
    }
}

impl<T> Unpin for Reply<T> {}

/// The receipt of a publish: one shard's answer for a user event, every shard's for a
/// channel event or broadcast.
#[derive(Debug)]
#[must_use = "a PublishReply does nothing unless awaited or waited on; drop it to fire and forget"]
pub struct PublishReply {
    pub(crate) parts: Vec<Reply<usize>>,
    pub(crate) user: Option<Reply<Receipt>>,
    pub(crate) total: usize,
}

impl PublishReply {
    /// Blocks until every shard answered. See [`Reply::wait`] (same panics).
    pub fn wait(self) -> Result<Receipt, HubClosed> {
        if let Some(r) = self.user {
            return r.wait();
        }
        let mut connections = 0;
        for p in self.parts {
            connections += p.wait()?;
        }
        Ok(Receipt {
            seq: None,
            connections,
        })
    }
}

impl Future for PublishReply {
    type Output = Result<Receipt, HubClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(r) = &mut this.user {
            return Pin::new(r).poll(cx);
        }
        while let Some(last) = this.parts.last_mut() {
            match Pin::new(last).poll(cx) {
                Poll::Ready(Ok(n)) => {
                    this.total += n;
                    this.parts.pop();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(Receipt {
            seq: None,
            connections: this.total,
        }))
    }
}
