//! The Redis broker and the in-process one give the same observable results. Random
//! sequences of publish (events and the deltas of two messages, which the histories merge),
//! connect (with or without `last_seq`), ack and disconnect over three users run on an embedded node and on a two-node cluster on a real `redis-server`; each
//! step's observations (receipts, welcomes, every frame each connection reads, gaps) are
//! compared, with seqs taken relative to each user's seq base (the two systems start their
//! bases from different clocks). Seeded, so a failure names its case and replays.

use std::collections::HashMap;
use std::time::Duration;

use agentcast_tests::{Client, RedisServer, TestServer, cluster_node, token_with};
use serde_json::json;

/// A small deterministic generator (64-bit LCG, high bits).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Publish {
        user: usize,
        node: usize,
        critical: bool,
        /// A `message_delta` of message `m<k>` (its text names the op), merged in the
        /// history with the user's previous event when that is a delta of the same message.
        delta: Option<u8>,
        op: usize,
    },
    Connect {
        user: usize,
        node: usize,
        last_seq: Option<u64>,
    },
    Ack {
        conn: usize,
    },
    Disconnect {
        conn: usize,
    },
}

const USERS: usize = 3;

fn ops(seed: u64, n: usize) -> Vec<Op> {
    let mut rng = Rng(seed);
    let mut published = [0u64; USERS];
    // A `last_seq` is only meaningful relative to a base the test has seen.
    let mut seen = [false; USERS];
    let mut open = 0usize;
    (0..n)
        .map(|op| match rng.below(10) {
            0..=3 => {
                let user = rng.below(USERS as u64) as usize;
                published[user] += 1;
                seen[user] = true;
                let critical = rng.below(4) == 0;
                // Half the others are deltas of one of two messages.
                let delta = match rng.below(4) {
                    _ if critical => None,
                    0 | 1 => None,
                    k => Some(k as u8 - 1),
                };
                Op::Publish {
                    user,
                    node: rng.below(2) as usize,
                    critical,
                    delta,
                    op,
                }
            }
            4..=6 => {
                let user = rng.below(USERS as u64) as usize;
                open += 1;
                let last_seq =
                    (seen[user] && rng.below(2) == 0).then(|| rng.below(published[user] + 2));
                seen[user] = true;
                Op::Connect {
                    user,
                    node: rng.below(2) as usize,
                    last_seq,
                }
            }
            7..=8 if open > 0 => Op::Ack {
                conn: rng.below(open as u64) as usize,
            },
            _ if open > 0 => Op::Disconnect {
                conn: rng.below(open as u64) as usize,
            },
            _ => Op::Publish {
                user: 0,
                node: 0,
                critical: false,
                delta: None,
                op,
            },
        })
        .collect()
}

/// One system under test: one or two nodes.
struct System {
    nodes: Vec<TestServer>,
    /// Per user: the seq base (welcome `last_seq` of a first connection, or first seq − 1).
    base: HashMap<usize, u64>,
    /// Connections by creation index (`None` once closed), with their user and last frame.
    conns: Vec<Option<(usize, Client, Option<u64>)>>,
}

impl System {
    fn rel(&mut self, user: usize, seq: u64) -> i64 {
        seq as i64 - *self.base.entry(user).or_insert(seq - 1) as i64
    }

    fn abs(&self, user: usize, rel: u64) -> u64 {
        self.base.get(&user).map_or(rel, |b| b + rel)
    }

    /// Reads what every open connection received, in order: everything that arrived within
    /// 150 ms of the step (delivery on loopback takes a few ms, cross-node included).
    async fn drain(&mut self, out: &mut Vec<String>) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        for i in 0..self.conns.len() {
            let Some((user, mut c, mut last)) = self.conns[i].take() else {
                continue;
            };
            while let Some(v) = c.try_next(Duration::from_millis(5)).await {
                match v["type"].as_str() {
                    Some("gap") => {
                        let (f, t) = (v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap());
                        out.push(format!(
                            "c{i} gap {}..{}",
                            self.rel(user, f),
                            self.rel(user, t)
                        ));
                    }
                    _ => {
                        let seq = v["seq"].as_u64().unwrap();
                        let mut line = format!("c{i} event {} {}", self.rel(user, seq), v["type"]);
                        if v["type"] == "message_delta" {
                            // Merged deltas: the range they cover and their text.
                            let from = v["seq_from"].as_u64().unwrap_or(seq);
                            line.push_str(&format!(
                                " from {} {} {}",
                                self.rel(user, from),
                                v["data"]["message_id"],
                                v["data"]["delta"]
                            ));
                        }
                        out.push(line);
                        last = Some(seq);
                    }
                }
            }
            self.conns[i] = Some((user, c, last));
        }
    }

    async fn apply(&mut self, op: &Op, out: &mut Vec<String>) {
        match *op {
            Op::Publish {
                user,
                node,
                critical,
                delta,
                op,
            } => {
                let node = &self.nodes[node % self.nodes.len()];
                let kind = if critical {
                    "agent_started"
                } else {
                    "tool_executing"
                };
                let body = match delta {
                    Some(m) => json!({"user_id": format!("m{user}"), "type": "message_delta",
                        "run_id": "r", "data": {"message_id": format!("m{m}"), "delta": format!("t{op} ")}}),
                    None => {
                        json!({"user_id": format!("m{user}"), "type": kind, "run_id": "r", "data": {}})
                    }
                };
                let (s, r) = node.publish(&body).await;
                assert_eq!(s, 200, "{r}");
                let rel = self.rel(user, r["seq"].as_u64().unwrap());
                out.push(format!(
                    "publish u{user} rel {rel} connections {}",
                    r["connections"]
                ));
            }
            Op::Connect {
                user,
                node,
                last_seq,
            } => {
                let node = &self.nodes[node % self.nodes.len()];
                // Enterprise: room for every connection a case opens (the free tier allows 5
                // per user per node, and the embedded system has one node).
                let t = token_with(&format!("m{user}"), json!({"tier": "enterprise"}));
                let q = match last_seq {
                    Some(rel) => format!("token={t}&last_seq={}", self.abs(user, rel)),
                    None => format!("token={t}"),
                };
                let c = node.connect_query(&q).await.expect("connect");
                let last = c.welcome["last_seq"].as_u64().unwrap();
                self.base.entry(user).or_insert(last);
                out.push(format!(
                    "connect u{user} {last_seq:?} welcome {}",
                    self.rel(user, last)
                ));
                self.conns.push(Some((user, c, None)));
            }
            Op::Ack { conn } => {
                if let Some((user, c, Some(last))) =
                    self.conns.get_mut(conn).and_then(Option::as_mut)
                {
                    c.send_json(&json!({"type": "ack", "seq": *last})).await;
                    let user = *user;
                    let last = *last;
                    out.push(format!("ack c{conn} {}", self.rel(user, last)));
                }
                // Cluster acks are written to Redis within 20 ms.
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            Op::Disconnect { conn } => {
                if let Some((_, c, _)) = self.conns.get_mut(conn).and_then(Option::take) {
                    c.close().await;
                    out.push(format!("close c{conn}"));
                }
                // The cluster-wide connection count drops asynchronously.
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }
        self.drain(out).await;
    }
}

/// Runs cases `cases` (each with its own Redis key prefix) and compares the two systems.
async fn agree(cases: std::ops::Range<u64>) {
    let redis = RedisServer::start();
    for case in cases {
        let seed = 0x5eed_0000 + case;
        let plan = ops(seed, 24);
        let mut embedded = System {
            nodes: vec![TestServer::start().await],
            base: HashMap::new(),
            conns: Vec::new(),
        };
        // A fresh key space per case (the users repeat).
        let prefix = format!("model{case}");
        let cluster_nodes = vec![
            cluster_node(&redis, "a", |c| c.redis_prefix = prefix.clone()).await,
            cluster_node(&redis, "b", |c| c.redis_prefix = prefix.clone()).await,
        ];
        let mut cluster = System {
            nodes: cluster_nodes,
            base: HashMap::new(),
            conns: Vec::new(),
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (step, op) in plan.iter().enumerate() {
            embedded.apply(op, &mut a).await;
            cluster.apply(op, &mut b).await;
            assert_eq!(
                a, b,
                "case {case} (seed {seed:#x}) differs at step {step} ({op:?}); ops: {plan:?}"
            );
        }
    }
}

// Four tests of two cases each, so they run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_broker_and_the_in_process_one_agree_cases_0_1() {
    agree(0..2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_broker_and_the_in_process_one_agree_cases_2_3() {
    agree(2..4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_broker_and_the_in_process_one_agree_cases_4_5() {
    agree(4..6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_broker_and_the_in_process_one_agree_cases_6_7() {
    agree(6..8).await;
}
