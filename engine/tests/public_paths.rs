//! Every public path of the modules that the layout work (docs/cluster.md §2.1) moved code out
//! of still names the same item: a compile-time check (the `use`s), plus a few uses so the
//! items are the ones users had.

#![allow(unused_imports)]

use agentcast_engine::broker::{BrokerHealth, Seed};
use agentcast_engine::clock::{Clock, ManualClock as _, SEQ_CLOCK_WAIT, SystemClock};
use agentcast_engine::config::{
    EnrichmentConfig, HubConfig, default_error_categories, default_error_patterns,
    default_tool_catalog,
};
use agentcast_engine::conn::close_code::{GOING_AWAY, INTERNAL_ERROR, TRY_AGAIN_LATER};
use agentcast_engine::conn::{
    ConnId, ConnectOptions, Connection, Readiness, Resume, Welcome, close_code,
};
use agentcast_engine::emitter::UserEmitter;
use agentcast_engine::enrich::{Enricher, ErrorCategory, ManualClock, Severity, ToolInfo, Urgency};
use agentcast_engine::health::{
    ComponentHealth, Fault, FaultRefused, HealthConfig, HealthReport, HealthState, mono_us,
};
use agentcast_engine::hub::{Connecting, Hub, PublishReply, Receipt, Reply};
use agentcast_engine::sequenced::UserEventParts;
use agentcast_engine::shard::Footprint;
use agentcast_engine::{
    BrokerHealth as _, Clock as _, Connecting as _, Connection as _, Enricher as _,
    ErrorCategory as _, Fault as _, FaultRefused as _, Footprint as _, HealthConfig as _,
    HealthReport as _, HealthState as _, ManualClock as _, PublishReply as _, Readiness as _,
    Receipt as _, Reply as _, Resume as _, Seed as _, Severity as _, SystemClock as _,
    ToolInfo as _, Urgency as _, UserEmitter as _, UserEventParts as _, Welcome as _,
};

#[test]
fn the_moved_items_are_reachable_at_their_old_paths() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    let hub = Hub::start(cfg).unwrap();
    let user = agentcast_engine::UserId::new("u").unwrap();
    let connecting: Connecting = hub.connect(user.clone(), ConnectOptions::default());
    let conn: Connection = connecting.wait().unwrap();
    let _: &Welcome = conn.welcome();
    let emitter: UserEmitter = hub.emitter(user, "r");
    let reply: PublishReply = emitter
        .agent_started(agentcast_engine::Data::empty())
        .unwrap();
    let receipt: Receipt = reply.wait().unwrap();
    assert_eq!(receipt.connections, 1);
    let sub: Reply<Result<(), agentcast_engine::SubscribeError>> =
        conn.subscribe(agentcast_engine::ChannelName::new("c").unwrap());
    sub.wait().unwrap().unwrap();
    let _: HealthState = hub.health_status();
    assert!(mono_us() > 0);
    assert_eq!(TRY_AGAIN_LATER, close_code::TRY_AGAIN_LATER);
    let _ = Enricher::new(&EnrichmentConfig::default());
    hub.shutdown();
}
