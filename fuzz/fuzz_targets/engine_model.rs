//! The engine against a reference model: arbitrary sequences of connect (with or without
//! `last_seq`), disconnect, publish to a user / channel / everyone with every priority,
//! subscribe, unsubscribe, ack, drain and housekeeping, driven through the public `Hub` /
//! `Connection` API. After every operation the hub is synced, so the engine is deterministic
//! and each drained frame, receipt, welcome, subscription answer, close code and table size
//! (`Hub::footprint`) must equal the model's. Tiny rings (3), hand-off queues (2), history (5)
//! and subscription limits (2) make every overflow, coalesce, eviction, gap and limit path
//! reachable in a few operations; `user_ttl = 0` makes housekeeping evict every user without
//! a connection.
#![no_main]
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use agentcast_engine::frame::payload_of;
use agentcast_engine::{
    ChannelName, ConnectOptions, Connection, Data, Event, EventKind, Gap, Hub, HubConfig, Priority,
    Resume, SubscribeError, Target, UserId,
};
use bytes::Bytes;
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};

const USERS: u8 = 3;
const CHANNELS: u8 = 2;
const RING: usize = 3;
const BATCH: usize = 2;
const HISTORY: usize = 5;
const MAX_SUBS: usize = 2;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Started,
    Thinking,
    Executing,
    Completed,
    Custom,
}

impl Kind {
    fn event_kind(self) -> EventKind {
        let name = match self {
            Kind::Started => "agent_started",
            Kind::Thinking => "agent_thinking",
            Kind::Executing => "tool_executing",
            Kind::Completed => "agent_completed",
            Kind::Custom => "custom_kind",
        };
        EventKind::parse(name).expect("valid kind")
    }

    fn priority(self) -> Priority {
        match self {
            Kind::Started | Kind::Completed => Priority::Critical,
            Kind::Thinking => Priority::Low,
            Kind::Executing | Kind::Custom => Priority::Normal,
        }
    }
}

/// Where a connect resumes: relative to the model's last seq when the user exists.
#[derive(Debug, Clone, Copy)]
enum ResumeChoice {
    FromAck,
    Back(u8),
    Ahead,
    Zero,
    Max,
}

#[derive(Debug, Clone, Copy)]
enum AckChoice {
    Back(u8),
    Ahead,
    Zero,
    Max,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Connect(u8, ResumeChoice),
    Disconnect(u8),
    PublishUser(u8, Kind, u8),
    PublishChannel(u8, Kind, u8),
    Broadcast(Kind, u8),
    Subscribe(u8, u8),
    Unsubscribe(u8, u8),
    Ack(u8, AckChoice),
    Drain(u8, u8),
    Housekeeping,
}

impl<'a> Arbitrary<'a> for Kind {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(*u.choose(&[
            Kind::Started,
            Kind::Thinking,
            Kind::Executing,
            Kind::Completed,
            Kind::Custom,
        ])?)
    }
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let small = |u: &mut Unstructured<'a>, n: u8| u.int_in_range(0..=n - 1);
        Ok(match u.int_in_range(0..=11u8)? {
            0 | 1 => Op::Connect(
                small(u, USERS)?,
                match u.int_in_range(0..=5u8)? {
                    0 | 1 => ResumeChoice::FromAck,
                    2 => ResumeChoice::Back(small(u, 8)?),
                    3 => ResumeChoice::Ahead,
                    4 => ResumeChoice::Zero,
                    _ => ResumeChoice::Max,
                },
            ),
            2 => Op::Disconnect(u.arbitrary()?),
            3 | 4 => Op::PublishUser(small(u, USERS)?, u.arbitrary()?, small(u, 2)?),
            5 => Op::PublishChannel(small(u, CHANNELS)?, u.arbitrary()?, small(u, 2)?),
            6 => Op::Broadcast(u.arbitrary()?, small(u, 2)?),
            7 => Op::Subscribe(u.arbitrary()?, small(u, CHANNELS + 1)?),
            8 => Op::Unsubscribe(u.arbitrary()?, small(u, CHANNELS + 1)?),
            9 => Op::Ack(
                u.arbitrary()?,
                match u.int_in_range(0..=3u8)? {
                    0 => AckChoice::Back(small(u, 8)?),
                    1 => AckChoice::Ahead,
                    2 => AckChoice::Zero,
                    _ => AckChoice::Max,
                },
            ),
            10 => Op::Drain(u.arbitrary()?, u.int_in_range(1..=4)?),
            _ => Op::Housekeeping,
        })
    }
}

/// A frame as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum F {
    /// An event, by the unique `id` in its data (and its seq for user events).
    Event {
        id: u64,
        seq: Option<u64>,
    },
    Gap(u64, u64),
}

#[derive(Debug, Clone)]
struct Queued {
    f: F,
    priority: Priority,
    run: Option<u8>,
}

struct MUser {
    last_seq: u64,
    ack: u64,
    history: VecDeque<(u64, F, Priority)>,
    evicted_upto: u64,
}

struct MConn {
    user: u8,
    conn: Connection,
    handoff: VecDeque<F>,
    ring: VecDeque<Queued>,
    backlogged: bool,
    /// Still in the engine's tables (not dropped, not force-closed).
    registered: bool,
    close: Option<u16>,
    channels: BTreeSet<u8>,
}

impl MConn {
    /// The engine's `push_frame` + ring policy; `None` when the frame was lost, and the
    /// connection is closed with 1013 when a critical frame finds no room.
    fn push(&mut self, q: Queued) -> bool {
        if self.ring.is_empty() && self.handoff.len() < BATCH {
            self.handoff.push_back(q.f);
            return true;
        }
        if self.ring.len() < RING {
            self.ring.push_back(q);
            self.backlogged = true;
            return true;
        }
        if let Some(i) = q.run.and_then(|run| {
            self.ring
                .iter()
                .position(|o| o.priority == Priority::Low && o.run == Some(run))
        }) {
            self.ring.remove(i);
            self.ring.push_back(q);
            self.backlogged = true;
            return true;
        }
        let lowest = self
            .ring
            .iter()
            .enumerate()
            .filter(|(_, o)| o.priority < q.priority)
            .min_by_key(|(i, o)| (o.priority, *i))
            .map(|(i, _)| i);
        match lowest {
            Some(i) => {
                self.ring.remove(i);
                self.ring.push_back(q);
                self.backlogged = true;
                true
            }
            None => {
                if q.priority == Priority::Critical {
                    self.close.get_or_insert(1013);
                    self.unregister();
                }
                false
            }
        }
    }

    fn refill(&mut self) {
        while self.handoff.len() < BATCH {
            let Some(q) = self.ring.pop_front() else {
                break;
            };
            self.handoff.push_back(q.f);
        }
        if !self.ring.is_empty() {
            self.backlogged = true;
        }
    }

    fn unregister(&mut self) {
        self.registered = false;
        self.ring.clear();
        self.channels.clear();
    }
}

fn parse(frames: &[Bytes]) -> Vec<F> {
    frames
        .iter()
        .map(|b| {
            let v: serde_json::Value =
                serde_json::from_slice(payload_of(b)).expect("frame payload is JSON");
            if v["type"] == "gap" {
                F::Gap(
                    v["from"].as_u64().expect("from"),
                    v["to"].as_u64().expect("to"),
                )
            } else {
                F::Event {
                    id: v["data"]["id"].as_u64().expect("id"),
                    seq: v["seq"].as_u64(),
                }
            }
        })
        .collect()
}

struct World {
    hub: Hub,
    users: Vec<UserId>,
    channels: Vec<ChannelName>,
    model: Vec<Option<MUser>>,
    conns: Vec<MConn>,
    next_id: u64,
}

impl World {
    fn sync(&self) {
        self.hub.sync_blocking(false).expect("hub alive");
    }

    fn conn_index(&self, i: u8) -> Option<usize> {
        (!self.conns.is_empty()).then(|| usize::from(i) % self.conns.len())
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Connect(u, choice) => self.connect(u, choice),
            Op::Disconnect(i) => {
                if let Some(i) = self.conn_index(i) {
                    let c = self.conns.remove(i);
                    drop(c.conn);
                    self.sync();
                }
            }
            Op::PublishUser(u, kind, run) => self.publish_user(u, kind, run),
            Op::PublishChannel(ch, kind, run) => {
                let target = Target::Channel(self.channels[usize::from(ch)].clone());
                self.fanout(target, Some(ch), kind, run);
            }
            Op::Broadcast(kind, run) => self.fanout(Target::Broadcast, None, kind, run),
            Op::Subscribe(i, ch) => {
                let Some(i) = self.conn_index(i) else { return };
                let ch = ch % CHANNELS;
                let c = &mut self.conns[i];
                let got = c
                    .conn
                    .subscribe(self.channels[usize::from(ch)].clone())
                    .wait()
                    .expect("hub alive");
                let want = if !c.registered {
                    Err(SubscribeError::Closed)
                } else if c.channels.contains(&ch) {
                    Ok(())
                } else if c.channels.len() >= MAX_SUBS {
                    Err(SubscribeError::Limit { max: MAX_SUBS })
                } else {
                    c.channels.insert(ch);
                    Ok(())
                };
                assert_eq!(got, want, "subscribe answer");
            }
            Op::Unsubscribe(i, ch) => {
                let Some(i) = self.conn_index(i) else { return };
                let ch = ch % CHANNELS;
                let c = &mut self.conns[i];
                c.conn.unsubscribe(self.channels[usize::from(ch)].clone());
                c.channels.remove(&ch);
                self.sync();
            }
            Op::Ack(i, choice) => {
                let Some(i) = self.conn_index(i) else { return };
                let u = usize::from(self.conns[i].user);
                let last = self.model[u].as_ref().map_or(0, |m| m.last_seq);
                let seq = match choice {
                    AckChoice::Back(k) => last.saturating_sub(u64::from(k)),
                    AckChoice::Ahead => last.saturating_add(3),
                    AckChoice::Zero => 0,
                    AckChoice::Max => u64::MAX,
                };
                self.conns[i].conn.ack(seq);
                self.sync();
                if let Some(m) = &mut self.model[u] {
                    m.ack = m.ack.max(seq.min(m.last_seq));
                }
            }
            Op::Drain(i, max) => {
                let Some(i) = self.conn_index(i) else { return };
                let c = &mut self.conns[i];
                let mut out = Vec::new();
                let n = c.conn.drain_into(&mut out, usize::from(max));
                assert_eq!(n, out.len());
                let want: Vec<F> = (0..usize::from(max))
                    .map_while(|_| c.handoff.pop_front())
                    .collect();
                assert_eq!(parse(&out), want, "drained frames");
                if std::mem::take(&mut c.backlogged) && c.registered {
                    c.refill();
                }
                self.sync();
            }
            Op::Housekeeping => {
                self.hub.sync_blocking(true).expect("hub alive");
                for (u, m) in self.model.iter_mut().enumerate() {
                    let connected = self
                        .conns
                        .iter()
                        .any(|c| c.registered && usize::from(c.user) == u);
                    if !connected {
                        *m = None;
                    }
                }
            }
        }
        for c in &self.conns {
            assert_eq!(c.conn.close_code(), c.close, "close code");
        }
    }

    fn connect(&mut self, u: u8, choice: ResumeChoice) {
        let ui = usize::from(u);
        let resume = match (choice, &self.model[ui]) {
            (ResumeChoice::FromAck, _) => Resume::FromAck,
            (ResumeChoice::Zero, _) => Resume::After(0),
            (ResumeChoice::Max, _) => Resume::After(u64::MAX),
            (ResumeChoice::Back(k), Some(m)) => {
                Resume::After(m.last_seq.saturating_sub(u64::from(k)))
            }
            (ResumeChoice::Ahead, Some(m)) => Resume::After(m.last_seq + 3),
            (_, None) => Resume::FromAck,
        };
        let mut opts = ConnectOptions::default();
        opts.resume = resume;
        opts.max_subscriptions = MAX_SUBS;
        let conn = self
            .hub
            .connect(self.users[ui].clone(), opts)
            .wait()
            .expect("hub alive");
        let w = *conn.welcome();
        let m = self.model[ui].get_or_insert_with(|| MUser {
            last_seq: w.last_seq,
            ack: w.last_seq,
            history: VecDeque::new(),
            evicted_upto: w.last_seq,
        });
        assert_eq!(w.last_seq, m.last_seq, "welcome last_seq");
        let after = match resume {
            Resume::After(s) => s,
            _ => m.ack,
        };
        let gap = (after < m.evicted_upto).then(|| Gap {
            from: after + 1,
            to: m.evicted_upto,
        });
        let mut ring = VecDeque::new();
        if let Some(g) = gap {
            ring.push_back(Queued {
                f: F::Gap(g.from, g.to),
                priority: Priority::Critical,
                run: None,
            });
        }
        let mut replayed = 0;
        for critical in [true, false] {
            for (seq, f, p) in &m.history {
                if *seq > after && (*p == Priority::Critical) == critical {
                    ring.push_back(Queued {
                        f: f.clone(),
                        priority: *p,
                        run: None,
                    });
                    replayed += 1;
                }
            }
        }
        assert_eq!(w.gap, gap, "welcome gap");
        assert_eq!(w.replayed, replayed, "welcome replayed");
        let mut c = MConn {
            user: u,
            conn,
            handoff: VecDeque::new(),
            ring,
            backlogged: false,
            registered: true,
            close: None,
            channels: BTreeSet::new(),
        };
        c.refill();
        self.conns.push(c);
        let n = self
            .conns
            .iter()
            .filter(|c| c.registered && c.user == u)
            .count();
        assert_eq!(w.user_connections, n, "welcome user_connections");
    }

    fn event(&mut self, kind: Kind, run: u8) -> (Event, u64) {
        self.next_id += 1;
        let data = Data::from_json(format!("{{\"id\":{}}}", self.next_id)).expect("json");
        let e = Event::new(kind.event_kind(), format!("run-{run}"), data);
        (e, self.next_id)
    }

    fn publish_user(&mut self, u: u8, kind: Kind, run: u8) {
        let (event, id) = self.event(kind, run);
        let ui = usize::from(u);
        let receipt = self
            .hub
            .publish(Target::User(self.users[ui].clone()), event)
            .expect("hub alive")
            .wait()
            .expect("hub alive");
        let seq = receipt.seq.expect("user events have a seq");
        let m = self.model[ui].get_or_insert_with(|| MUser {
            last_seq: seq - 1,
            ack: seq - 1,
            history: VecDeque::new(),
            evicted_upto: seq - 1,
        });
        m.last_seq += 1;
        assert_eq!(seq, m.last_seq, "seq");
        let f = F::Event { id, seq: Some(seq) };
        if m.history.len() >= HISTORY
            && let Some((s, _, _)) = m.history.pop_front()
        {
            m.evicted_upto = m.evicted_upto.max(s);
        }
        m.history.push_back((seq, f.clone(), kind.priority()));
        let run = matches!(kind, Kind::Thinking).then_some(run);
        let mut delivered = 0;
        for c in self
            .conns
            .iter_mut()
            .filter(|c| c.registered && c.user == u)
        {
            delivered += usize::from(c.push(Queued {
                f: f.clone(),
                priority: kind.priority(),
                run,
            }));
        }
        assert_eq!(receipt.connections, delivered, "user receipt");
    }

    fn fanout(&mut self, target: Target, ch: Option<u8>, kind: Kind, run: u8) {
        let (event, id) = self.event(kind, run);
        let receipt = self
            .hub
            .publish(target, event)
            .expect("hub alive")
            .wait()
            .expect("hub alive");
        assert_eq!(receipt.seq, None);
        let run = matches!(kind, Kind::Thinking).then_some(run);
        let mut delivered = 0;
        for c in self
            .conns
            .iter_mut()
            .filter(|c| c.registered && ch.is_none_or(|ch| c.channels.contains(&ch)))
        {
            delivered += usize::from(c.push(Queued {
                f: F::Event { id, seq: None },
                priority: kind.priority(),
                run,
            }));
        }
        assert_eq!(receipt.connections, delivered, "fan-out receipt");
    }

    fn check_footprint(&self) {
        let fp = self.hub.footprint_blocking().expect("hub alive");
        let live = self.conns.iter().filter(|c| c.registered);
        assert_eq!(fp.connections, live.clone().count(), "connections");
        assert_eq!(fp.users, self.model.iter().flatten().count(), "users");
        let history: usize = self.model.iter().flatten().map(|m| m.history.len()).sum();
        assert_eq!(fp.history_events, history, "history events");
        // Each shard indexes its own subscribers: a channel counts once per shard using it.
        let channels: BTreeSet<(usize, u8)> = live
            .clone()
            .flat_map(|c| {
                let shard = self.hub.shard_of(&self.users[usize::from(c.user)]);
                c.channels.iter().map(move |&ch| (shard, ch))
            })
            .collect();
        assert_eq!(fp.channels, channels.len(), "channels");
        assert_eq!(
            fp.backlog,
            live.map(|c| c.ring.len()).sum::<usize>(),
            "backlog"
        );
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(shards) = u.int_in_range(1..=2usize) else {
        return;
    };
    let mut cfg = HubConfig::default();
    cfg.shards = shards;
    cfg.ring_capacity = RING;
    cfg.write_batch = BATCH;
    cfg.history_len = HISTORY;
    cfg.history_max_age = Duration::from_secs(86_400);
    cfg.user_ttl = Duration::ZERO;
    cfg.ack_deadline = Duration::from_secs(86_400);
    cfg.tick = Duration::from_secs(3_600);
    let mut w = World {
        hub: Hub::start(cfg).expect("hub starts"),
        users: (0..USERS)
            .map(|i| UserId::new(&format!("user-{i}")).expect("user"))
            .collect(),
        channels: (0..CHANNELS)
            .map(|i| ChannelName::new(&format!("job:{i}")).expect("channel"))
            .collect(),
        model: (0..USERS).map(|_| None).collect(),
        conns: Vec::new(),
        next_id: 0,
    };
    for _ in 0..64 {
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        w.apply(op);
        w.check_footprint();
    }
    // Everything goes away: memory returns to the empty hub.
    w.conns.clear();
    w.apply(Op::Housekeeping);
    w.check_footprint();
    w.hub.shutdown();
});
