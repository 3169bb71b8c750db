//! One shard's canary: an internal connection and the tiny events published to it (see
//! [The canary](crate::health#the-canary)).

use std::future::Future;

use bytes::Bytes;

use crate::conn::handle::{Connecting, Connection};
use crate::conn::shared::ConnectOptions;
use crate::event::{Data, Event, EventKind, Target, UserId};
use crate::frame::payload_of;
use crate::health::probe::Probe;

/// One shard's canary.
#[derive(Default)]
pub(crate) struct Canary {
    user: Option<UserId>,
    conn: Option<Connection>,
    /// Nonce of the canary in flight and when it was sent (mono ms).
    outstanding: Option<(u64, u64)>,
    /// Since when (mono ms) the in-flight canary is late, if it is.
    late_since: Option<u64>,
    /// A registration in progress (polled, never waited on: a stalled worker must not stall
    /// the monitor).
    pending: Option<Connecting>,
    frames: Vec<Bytes>,
    sent_count: u64,
    received_count: u64,
}

const CANARY_KIND: &str = "agentcast_canary";

impl Canary {
    pub(crate) fn sent(&self) -> u64 {
        self.sent_count
    }

    pub(crate) fn received(&self) -> u64 {
        self.received_count
    }

    /// One probe: checks the canary in flight, sends the next. Returns how late the canary
    /// in flight is when it is later than `late_ms`.
    pub(crate) fn probe(
        &mut self,
        hub: &dyn Probe,
        shard: usize,
        now: u64,
        late_ms: u64,
        running: bool,
        nonce: &mut u64,
    ) -> Option<u64> {
        if !running {
            // The worker restarts or is down: its shard component says so; the connection
            // was closed with 1011 and is registered again once the worker runs.
            self.conn = None;
            self.pending = None;
            self.outstanding = None;
            self.late_since = None;
            return None;
        }
        let user = self
            .user
            .get_or_insert_with(|| hub.internal_user_on(shard))
            .clone();
        if self.conn.as_ref().is_some_and(|c| c.close_code().is_some()) {
            self.conn = None;
            self.outstanding = None;
        }
        if self.conn.is_none() {
            let pending = self.pending.get_or_insert_with(|| {
                let opts = ConnectOptions {
                    history_len: Some(4),
                    internal: true,
                    ..ConnectOptions::default()
                };
                hub.connect(user.clone(), opts)
            });
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match std::pin::Pin::new(pending).poll(&mut cx) {
                std::task::Poll::Ready(Ok(c)) => {
                    self.conn = Some(c);
                    self.pending = None;
                }
                std::task::Poll::Ready(Err(_)) => {
                    self.pending = None;
                    return None;
                }
                std::task::Poll::Pending => return None,
            }
        }
        if let Some(conn) = &mut self.conn {
            self.frames.clear();
            conn.drain_into(&mut self.frames, 1024);
            if let Some((n, _)) = self.outstanding {
                let needle = format!("\"n\":{n}}}");
                if self
                    .frames
                    .iter()
                    .any(|f| contains(payload_of(f), needle.as_bytes()))
                {
                    self.outstanding = None;
                    self.late_since = None;
                    self.received_count += 1;
                }
            }
            if let Some(max) = self.frames.iter().filter_map(seq_of).max() {
                conn.ack(max);
            }
        }
        let late = match self.outstanding {
            Some((_, sent)) if now.saturating_sub(sent) >= late_ms => {
                let since = *self.late_since.get_or_insert(sent);
                Some(now.saturating_sub(since))
            }
            _ => None,
        };
        // A late canary may never come (a drop): send a fresh one each interval meanwhile; the
        // first that arrives ends the lateness.
        if self.outstanding.is_none() || late.is_some() {
            *nonce += 1;
            let event = Event {
                kind: EventKind::Custom(std::sync::Arc::from(CANARY_KIND)),
                run_id: None,
                data: Data::from_validated(Bytes::from(format!("{{\"n\":{}}}", *nonce))),
                priority: None,
            };
            if hub.send(Target::User(user), event).is_ok() {
                self.outstanding = Some((*nonce, now));
                self.sent_count += 1;
            }
        }
        late
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The `seq` of a user event frame (internal frames are small; a linear scan is fine).
fn seq_of(frame: &Bytes) -> Option<u64> {
    let p = payload_of(frame);
    let key = b"\"seq\":";
    let at = p.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = p[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&p[at..at + digits]).ok()?.parse().ok()
}
