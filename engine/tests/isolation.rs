//! Isolation: on random sequences of connect, subscribe, unsubscribe, publish and disconnect,
//! every frame reaches exactly the connections of its target — never another user's — and
//! each of them exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use agentcast_engine::{
    ChannelName, ConnectOptions, Connection, Data, Event, EventKind, Hub, Target,
};
use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Connect(u8),
    Disconnect(u8),
    Subscribe(u8, u8),
    Unsubscribe(u8, u8),
    PublishUser(u8),
    PublishChannel(u8),
    Broadcast,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4).prop_map(Op::Connect),
        1 => any::<u8>().prop_map(Op::Disconnect),
        2 => (any::<u8>(), 0u8..3).prop_map(|(c, ch)| Op::Subscribe(c, ch)),
        1 => (any::<u8>(), 0u8..3).prop_map(|(c, ch)| Op::Unsubscribe(c, ch)),
        4 => (0u8..4).prop_map(Op::PublishUser),
        2 => (0u8..3).prop_map(Op::PublishChannel),
        1 => Just(Op::Broadcast),
    ]
}

struct Live {
    user: u8,
    conn: Connection,
    channels: BTreeSet<u8>,
}

fn ids(frames: &[serde_json::Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| f["data"]["id"].as_u64().expect("test frames carry an id"))
        .collect()
}

fn run(hub: &Hub, ops: Vec<Op>) -> Result<(), TestCaseError> {
    // Ids on both sides of the shard's inline-key limit (38 bytes): a short one, one of
    // exactly 38 bytes, one of 39 sharing those 38 bytes, and the longest allowed (256).
    let prefix = "i".repeat(37) + "1";
    let users: Vec<_> = [
        "iso-user-0".to_owned(),
        prefix.clone(),
        prefix + "x",
        "l".repeat(255) + "3",
    ]
    .iter()
    .map(|id| user(id))
    .collect();
    let chans: Vec<_> = (0..3)
        .map(|i| ChannelName::new(&format!("iso:{i}")).unwrap())
        .collect();
    let mut live: Vec<Live> = Vec::new();
    // Model of the ack cursor: user events published while the user had no connection.
    let mut pending: BTreeMap<u8, Vec<(u64, u64)>> = BTreeMap::new();
    let mut next_id = 0u64;
    for op in ops {
        match op {
            Op::Connect(u) => {
                let mut conn = hub
                    .connect(users[u as usize].clone(), ConnectOptions::default())
                    .wait()
                    .unwrap();
                let replay = pending.remove(&u).unwrap_or_default();
                let got = drain(&mut conn);
                prop_assert_eq!(ids(&got), replay.iter().map(|p| p.0).collect::<Vec<_>>());
                if let Some(&(_, seq)) = replay.last() {
                    conn.ack(seq);
                    hub.sync_blocking(false).unwrap();
                }
                live.push(Live {
                    user: u,
                    conn,
                    channels: BTreeSet::new(),
                });
            }
            Op::Disconnect(i) if !live.is_empty() => {
                live.remove(i as usize % live.len());
                hub.sync_blocking(false).unwrap();
            }
            Op::Subscribe(i, ch) if !live.is_empty() => {
                let n = live.len();
                let l = &mut live[i as usize % n];
                l.conn
                    .subscribe(chans[ch as usize].clone())
                    .wait()
                    .unwrap()
                    .unwrap();
                l.channels.insert(ch);
            }
            Op::Unsubscribe(i, ch) if !live.is_empty() => {
                let n = live.len();
                let l = &mut live[i as usize % n];
                l.conn.unsubscribe(chans[ch as usize].clone());
                l.channels.remove(&ch);
                hub.sync_blocking(false).unwrap();
            }
            Op::PublishUser(_) | Op::PublishChannel(_) | Op::Broadcast => {
                next_id += 1;
                let data = Data::from_json(format!("{{\"id\":{next_id}}}")).unwrap();
                let (target, expect): (Target, Vec<bool>) = match op {
                    Op::PublishUser(u) => (
                        Target::User(users[u as usize].clone()),
                        live.iter().map(|l| l.user == u).collect(),
                    ),
                    Op::PublishChannel(ch) => (
                        Target::Channel(chans[ch as usize].clone()),
                        live.iter().map(|l| l.channels.contains(&ch)).collect(),
                    ),
                    _ => (Target::Broadcast, live.iter().map(|_| true).collect()),
                };
                let receipt = hub
                    .publish(target, Event::new(EventKind::ToolCompleted, "r", data))
                    .unwrap()
                    .wait()
                    .unwrap();
                prop_assert_eq!(receipt.connections, expect.iter().filter(|&&e| e).count());
                if let Op::PublishUser(u) = op {
                    let seq = receipt.seq.unwrap();
                    if expect.iter().any(|&e| e) {
                        // Delivered live: ack it so later connects do not replay it.
                        let l = live.iter().find(|l| l.user == u).unwrap();
                        l.conn.ack(seq);
                        hub.sync_blocking(false).unwrap();
                    } else {
                        pending.entry(u).or_default().push((next_id, seq));
                    }
                }
                for (l, &e) in live.iter_mut().zip(&expect) {
                    let got = ids(&drain(&mut l.conn));
                    let want: Vec<u64> = if e { vec![next_id] } else { vec![] };
                    prop_assert_eq!(
                        got,
                        want,
                        "connection of user {} channels {:?}",
                        l.user,
                        l.channels
                    );
                }
            }
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn each_frame_reaches_exactly_its_targets(ops in proptest::collection::vec(op(), 1..60)) {
        // A fresh hub per case: user state (seq, ack cursor) starts clean, as in the model.
        let hub = hub(2);
        run(&hub, ops)?;
    }
}
