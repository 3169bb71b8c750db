//! The engine's half of cluster mode: events sequenced by a broker enter here (see
//! [`crate::broker`]). An `impl Hub` block of its own, as [`crate::emitter`] is, so the
//! embedded paths in `hub.rs` stay as they were.

use std::sync::Arc;

use bytes::Bytes;

use crate::command::Command;
use crate::enrich::rules::stateless_meta;
use crate::error::PublishError;
use crate::event::{Event, Priority, UserId};
use crate::frame::{self, EventFields, Origin};
use crate::health::state as health;
use crate::history::HistoryEntry;
use crate::hub::Hub;
use crate::shard::coalesce_run;

/// A user event serialized once on the publishing node, split around its seq, which only the
/// broker knows: `head` ends with `"seq":`, `tail` begins right after the number.
#[derive(Debug, Clone)]
pub struct UserEventParts {
    /// Up to and including `"seq":`.
    pub head: Bytes,
    /// Everything after the seq.
    pub tail: Bytes,
    /// The event's priority (its own, or the table's for its type).
    pub priority: Priority,
    /// The run whose older `agent_thinking` frames a queued one replaces, if any.
    pub coalesce_run: Option<Arc<str>>,
}

impl Hub {
    /// Serializes a user event for a broker that assigns its seq (cluster mode): the frame's
    /// payload without the seq. Enrichment's per-run `meta` needs the run's state, which in
    /// cluster mode is not on this node: only the stateless part is added.
    pub fn encode_user_parts(&self, event: &Event, ts_ms: u64) -> UserEventParts {
        let meta = stateless_meta(self.inner_rules(), &event.kind, event.data.as_bytes());
        self.encode_user_parts_with(event, ts_ms, meta.as_deref())
    }

    /// As [`Hub::encode_user_parts`], with the `"meta":{…}` member the caller computed (for
    /// example with an [`Enricher::partial`](crate::Enricher::partial) that tracks the runs
    /// published through this node), or none.
    pub fn encode_user_parts_with(
        &self,
        event: &Event,
        ts_ms: u64,
        meta: Option<&[u8]>,
    ) -> UserEventParts {
        let priority = self.priority_of(event);
        let f = frame::encode_event(&EventFields {
            kind: &event.kind,
            origin: Origin::User { seq: 0 },
            run_id: event.run_id.as_deref(),
            ts_ms,
            priority,
            data: event.data.as_bytes(),
            extra: meta,
        });
        let payload = f.payload();
        // `{"type":"<kind>","seq":0,…`: the kind is a validated name (no quote, no escape),
        // so the first `"seq":0` is the one the encoder wrote.
        let marker = b",\"seq\":0";
        let at = payload
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("the encoder writes the seq after the type");
        let split = at + marker.len() - 1;
        UserEventParts {
            head: Bytes::copy_from_slice(&payload[..split]),
            tail: Bytes::copy_from_slice(&payload[split + 1..]),
            priority,
            coalesce_run: coalesce_run(event),
        }
    }

    /// Delivers a user event the broker sequenced (cluster mode) to `user`'s connections on
    /// this node, through its home shard: stored in the shard's history cache, dropped if the
    /// shard has seen its seq, a `gap` first if seqs are missing before it (see
    /// [`crate::broker`]). `entry.frame` is the whole WebSocket frame, built once per node.
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`]: [`PublishError::Overloaded`] when the shard's queue is full (retry),
    /// [`PublishError::Closed`] after shutdown. `kind` is the event's
    /// [`EventKind::index`](crate::EventKind::index) (for the per-type counters).
    pub fn deliver(
        &self,
        user: UserId,
        entry: HistoryEntry,
        kind: u8,
        coalesce_run: Option<Arc<str>>,
    ) -> Result<(), PublishError> {
        let w = &self.inner_workers()[self.shard_of(&user)];
        w.send_publish(Command::Deliver {
            user,
            entry,
            coalesce_run,
            kind,
            born_us: health::mono_us(),
        })
    }
}
