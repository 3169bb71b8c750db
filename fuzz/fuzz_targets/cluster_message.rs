//! What a cluster node reads from Redis (pub/sub messages, channel names, Stream entries) is
//! untrusted: parsing it never panics (`server/src/cluster/wire.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = agentcast_server::fuzzing::cluster_message(data);
});
