//! [`InProcessBroker`], the embedded default (see [`crate::broker`]).

use std::sync::Arc;

use crate::broker::api::{Broker, BrokerError, BrokerFuture, Lease, Opened, Published};
use crate::conn::shared::Resume;
use crate::event::{ChannelName, Event, Target, UserId};
use crate::hub::Hub;
use crate::idempotency::IdempotencyCache;

/// The embedded broker: the hub's shards in owner mode and a per-process idempotency window.
/// See [`crate::broker`].
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use agentcast_engine::idempotency::IdempotencyCache;
/// use agentcast_engine::{
///     Broker, BrokerError, Data, Event, EventKind, Hub, HubConfig, InProcessBroker, Target, UserId,
/// };
///
/// let hub = Hub::start(HubConfig::default()).unwrap();
/// let broker = InProcessBroker::new(hub.clone(), IdempotencyCache::new(Duration::from_secs(60), 1_000));
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let alice = Target::User(UserId::new("alice").unwrap());
/// let event = || Event::new(EventKind::AgentStarted, "r1", Data::empty());
/// let key: Option<Arc<str>> = Some("k1".into());
/// let first = rt.block_on(broker.publish(alice.clone(), event(), key.clone())).unwrap();
/// let again = rt.block_on(broker.publish(alice.clone(), event(), key.clone())).unwrap();
/// assert_eq!((again.receipt.seq, again.replayed), (first.receipt.seq, true));
/// // The same key with another request publishes nothing.
/// let other = Event::new(EventKind::AgentCompleted, "r1", Data::empty());
/// let refused = rt.block_on(broker.publish(alice, other, key));
/// assert!(matches!(refused, Err(BrokerError::KeyReused(_))));
/// ```
#[derive(Debug)]
pub struct InProcessBroker {
    hub: Hub,
    idempotency: IdempotencyCache,
}

impl InProcessBroker {
    /// A broker over `hub`'s shards, remembering idempotency keys as `idempotency` does.
    pub fn new(hub: Hub, idempotency: IdempotencyCache) -> InProcessBroker {
        InProcessBroker { hub, idempotency }
    }
}

impl Broker for InProcessBroker {
    fn kind(&self) -> &'static str {
        "in-process"
    }

    fn publish(
        &self,
        target: Target,
        event: Event,
        idempotency_key: Option<Arc<str>>,
    ) -> BrokerFuture<'_, Published> {
        let Some(key) = idempotency_key else {
            // Queued now, so a batch's publishes reach the shards before any is awaited.
            let reply = self.hub.publish(target, event);
            return Box::pin(async move {
                Ok(Published {
                    receipt: reply?.await?,
                    replayed: false,
                })
            });
        };
        Box::pin(async move {
            let fingerprint = self.idempotency.fingerprint(&target, &event);
            let slot = self.idempotency.slot(&key, fingerprint)?;
            let mut first = false;
            let receipt = *slot
                .get_or_try_init(|| {
                    first = true;
                    async { Ok::<_, BrokerError>(self.hub.publish(target, event)?.await?) }
                })
                .await?;
            Ok(Published {
                receipt,
                replayed: !first,
            })
        })
    }

    fn open(
        &self,
        _user: &UserId,
        resume: Resume,
        _history_len: usize,
        _connection_limit: usize,
        _rewind_to_open_run: bool,
    ) -> BrokerFuture<'_, Opened> {
        Box::pin(std::future::ready(Ok(Opened {
            resume,
            seed: None,
            lease: Lease::none(),
        })))
    }

    fn ack(&self, _user: &UserId, _seq: u64) {
        // The home shard's cursor is the only one.
    }

    fn watch(&self, _channel: &ChannelName) -> BrokerFuture<'_, Lease> {
        Box::pin(std::future::ready(Ok(Lease::none())))
    }
}
