//! The requests a shard's worker serves ([`Command`]), below both: the shard handles them, the
//! worker queues them, the hub and the connections' handles send them. Generic over the shard
//! type only for [`Command::Inspect`], so this module does not name the shard.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::conn::shared::{ConnId, ConnShared, ConnectOptions, Welcome};
use crate::error::SubscribeError;
use crate::event::{ChannelName, Event, Priority, UserId};
use crate::health::state::Fault;
use crate::history::HistoryEntry;
use crate::reply::Receipt;

/// A request to a shard worker.
pub(crate) enum Command<S> {
    /// Publish to one user of this shard: assign seq, serialize, record, deliver.
    Publish {
        user: UserId,
        event: Event,
        priority: Priority,
        ts_ms: u64,
        /// [`mono_us`](crate::health::mono_us) at publish.
        born_us: u64,
        reply: Option<oneshot::Sender<Receipt>>,
    },
    /// Deliver an already serialized channel or broadcast frame to this shard's recipients.
    Fanout {
        frame: Bytes,
        channel: Option<ChannelName>,
        priority: Priority,
        coalesce_run: Option<Arc<str>>,
        /// [`EventKind::index`](crate::EventKind::index) of the event.
        kind: u8,
        /// [`mono_us`](crate::health::mono_us) at publish.
        born_us: u64,
        reply: Option<oneshot::Sender<usize>>,
    },
    /// Deliver an event sequenced by the broker (cluster mode; see [`crate::broker`]).
    Deliver {
        user: UserId,
        entry: HistoryEntry,
        coalesce_run: Option<Arc<str>>,
        /// [`EventKind::index`](crate::EventKind::index) of the event.
        kind: u8,
        /// [`mono_us`](crate::health::mono_us) when it arrived.
        born_us: u64,
    },
    Connect {
        user: UserId,
        id: ConnId,
        shared: Arc<ConnShared>,
        options: ConnectOptions,
        reply: oneshot::Sender<(usize, Welcome)>,
    },
    Disconnect {
        key: usize,
        id: ConnId,
    },
    Ack {
        user: UserId,
        seq: u64,
    },
    Subscribe {
        key: usize,
        id: ConnId,
        channel: ChannelName,
        reply: oneshot::Sender<Result<(), SubscribeError>>,
    },
    Unsubscribe {
        key: usize,
        id: ConnId,
        channel: ChannelName,
    },
    Refill {
        key: usize,
        id: ConnId,
    },
    /// The transport's socket, for direct writes (see [`crate::sink`]).
    AttachSink {
        key: usize,
        id: ConnId,
        sink: Arc<dyn crate::sink::SocketSink>,
    },
    /// Runs `f` on the worker thread with the shard (tests and introspection).
    Inspect(Box<dyn FnOnce(&mut S) + Send>),
    /// A fault injected by a test of the health machinery.
    Fault(Fault),
    /// Begin a graceful shutdown (see the [worker's docs](crate::worker)).
    Drain,
    /// Stop the worker.
    Shutdown,
}
