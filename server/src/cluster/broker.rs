//! The Redis broker: [`Cluster`] behind the engine's [`Broker`] trait, so the server's
//! publish, connect, ack and subscribe paths are the same code in both modes.

use std::sync::Arc;

use agentcast_engine::{
    Broker, BrokerFuture, ChannelName, Event, Lease, Opened, Published, Resume, Target, UserId,
};

use super::Cluster;

/// See the [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct RedisBroker(pub(crate) Arc<Cluster>);

impl Broker for RedisBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn publish(
        &self,
        target: Target,
        event: Event,
        idempotency_key: Option<Arc<str>>,
    ) -> BrokerFuture<'_, Published> {
        Box::pin(async move {
            match target {
                Target::User(user) => self.0.publish_user(user, event, idempotency_key).await,
                target => self.0.publish_fanout(target, event, idempotency_key).await,
            }
        })
    }

    fn open(
        &self,
        user: &UserId,
        resume: Resume,
        history_len: usize,
        connection_limit: usize,
        rewind_to_open_run: bool,
    ) -> BrokerFuture<'_, Opened> {
        let user = user.clone();
        Box::pin(async move {
            self.0
                .open_user(
                    &user,
                    resume,
                    history_len,
                    connection_limit,
                    rewind_to_open_run,
                )
                .await
        })
    }

    fn ack(&self, user: &UserId, seq: u64) {
        self.0.ack(user, seq);
    }

    fn watch(&self, channel: &ChannelName) -> BrokerFuture<'_, Lease> {
        let channel = channel.clone();
        Box::pin(async move { self.0.watch_channel(&channel).await })
    }
}
