//! Cluster mode keeps a message's consecutive deltas merged in the Redis Stream, as the
//! embedded history does (docs/cluster.md, §3.2 "Merged deltas"): a long answer counts as a
//! few entries against `history_len`, not one per token, so it evicts nothing published
//! before it; a connection on another node gets `message_started`, one delta with the whole
//! text and `message_completed`; a resume inside the message, on any node, gets exactly the
//! rest of the text as one delta; deltas of two interleaved messages never merge; and the
//! byte bound still holds, with `hb` equal to what the Stream holds. Each test starts its own
//! `redis-server` on a free port (never 6379) and reads it with the `redis` crate.

use std::time::Duration;

use agentcast_tests::{RedisServer, TestServer, cluster_node, token};
use serde_json::{Value, json};

/// The Redis of `server`, for reading the Stream behind the nodes' backs.
fn redis_conn(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .expect("connect to the test's redis")
}

fn xlen(redis: &RedisServer, user: &str) -> usize {
    redis::cmd("XLEN")
        .arg(format!("ac:{{{user}}}:h"))
        .query(&mut redis_conn(redis))
        .expect("XLEN")
}

type Entries = Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>;

fn entries(redis: &RedisServer, user: &str) -> Entries {
    redis::cmd("XRANGE")
        .arg(format!("ac:{{{user}}}:h"))
        .arg("-")
        .arg("+")
        .query(&mut redis_conn(redis))
        .expect("XRANGE")
}

fn field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// The publish request of one event of message `msg` of run `r1` to `user`.
fn message_event(user: &str, kind: &str, msg: &str, delta: Option<&str>) -> Value {
    let mut data = json!({"message_id": msg});
    if let Some(d) = delta {
        data["delta"] = json!(d);
    }
    json!({"user_id": user, "type": kind, "run_id": "r1", "data": data})
}

/// Publishes `items` in order (batches of 1,000) and returns their seqs.
async fn publish_all(node: &TestServer, items: &[Value]) -> Vec<u64> {
    let mut seqs = Vec::new();
    for chunk in items.chunks(1000) {
        for r in node.publish_batch(chunk).await {
            seqs.push(r["seq"].as_u64().unwrap_or_else(|| panic!("{r}")));
        }
    }
    seqs
}

/// Every frame a connection of `user` on `node` resuming after `last_seq` gets, until 500 ms
/// of silence.
async fn replay(node: &TestServer, user: &str, last_seq: u64) -> Vec<Value> {
    let q = format!("token={}&last_seq={last_seq}", token(user));
    let mut c = node.connect_query(&q).await.expect("connect");
    let mut got = Vec::new();
    while let Some(e) = c.try_next(Duration::from_millis(500)).await {
        got.push(e);
    }
    c.close().await;
    got
}

/// The tokens of a long answer: 8 bytes each, some needing JSON escapes.
fn tokens(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 7 {
            3 => format!("\"q{:04}\" ", i % 10_000),
            5 => format!("é\\{:04}\n", i % 10_000),
            _ => format!("tok{:04} ", i % 10_000),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_answer_evicts_nothing_before_it_and_replays_as_one_delta_on_another_node() {
    let redis = RedisServer::start();
    let tweak = |c: &mut agentcast_server::Config| {
        c.history_len = Some(50);
        c.tiers.free.history_len = 50;
    };
    let a = cluster_node(&redis, "a", tweak).await;
    let b = cluster_node(&redis, "b", tweak).await;
    let mut before = Vec::new();
    for i in 0..10 {
        let (s, v) = a
            .publish(&json!({"user_id": "long", "type": "note", "data": {"i": i}}))
            .await;
        assert_eq!(s, 200, "{v}");
        before.push(v["seq"].as_u64().unwrap());
    }
    let toks = tokens(3000);
    let mut items = vec![message_event("long", "message_started", "m1", None)];
    items.extend(
        toks.iter()
            .map(|t| message_event("long", "message_delta", "m1", Some(t))),
    );
    items.push(message_event("long", "message_completed", "m1", None));
    let seqs = publish_all(&a, &items).await;
    // 3,000 deltas of 8 characters (~25 KB escaped) are a handful of 4 KiB entries, so the
    // Stream holds the ten events before them, the message, and stays far below 50 entries.
    let len = xlen(&redis, "long");
    assert!(
        len <= 10 + 2 + 8,
        "XLEN {len}: deltas are not merged in redis"
    );
    let held = entries(&redis, "long");
    assert_eq!(
        held[0].0,
        format!("{}-0", before[0]),
        "the oldest event was evicted"
    );
    assert_eq!(
        held.last().unwrap().0,
        format!("{}-0", seqs.last().unwrap())
    );
    // A connection on the other node, from before the first event: everything, the message
    // as started + one whole delta + completed.
    let got = replay(&b, "long", before[0] - 1).await;
    assert_eq!(got.len(), 13, "{:?}", &got[..got.len().min(14)]);
    for (e, seq) in got.iter().zip(&before) {
        assert_eq!(
            (e["type"].as_str(), e["seq"].as_u64()),
            (Some("note"), Some(*seq))
        );
    }
    assert_eq!(got[10]["type"], "message_started");
    assert_eq!(got[10]["seq"].as_u64(), Some(seqs[0]));
    let delta = &got[11];
    assert_eq!(delta["type"], "message_delta", "{delta}");
    assert_eq!(delta["seq_from"].as_u64(), Some(seqs[1]));
    assert_eq!(delta["seq"].as_u64(), Some(seqs[3000]));
    assert_eq!(delta["data"]["message_id"], "m1");
    assert_eq!(
        delta["data"]["delta"].as_str(),
        Some(toks.concat().as_str())
    );
    assert_eq!(got[12]["type"], "message_completed");
    assert_eq!(got[12]["seq"].as_u64(), Some(seqs[3001]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_inside_a_message_on_another_node_gets_exactly_the_rest_of_the_text() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis, "a", |_| {}).await;
    let b = cluster_node(&redis, "b", |_| {}).await;
    let c = cluster_node(&redis, "c", |_| {}).await;
    // 1,200 tokens (~10 KB escaped): three merged entries in Redis.
    let toks = tokens(1200);
    let mut items = vec![message_event("res", "message_started", "m1", None)];
    items.extend(
        toks.iter()
            .map(|t| message_event("res", "message_delta", "m1", Some(t))),
    );
    let seqs = publish_all(&a, &items).await;
    let held = entries(&redis, "res");
    assert!(held.len() >= 3, "{} entries", held.len());
    // Where each merged entry starts and ends, to resume right at and around the seams.
    let mut points = vec![
        seqs[0] - 1,
        seqs[0],
        seqs[1],
        seqs[2],
        seqs[600],
        seqs[1199],
    ];
    for (id, fields) in &held[1..] {
        let last: u64 = id.trim_end_matches("-0").parse().unwrap();
        let from: u64 =
            field(fields, "sf").map_or(last, |f| std::str::from_utf8(f).unwrap().parse().unwrap());
        points.extend([from - 1, from, last - 1]);
    }
    points.sort_unstable();
    points.dedup();
    for (i, &after) in points.iter().enumerate() {
        // Alternate the nodes, none of them the publisher.
        let node = if i % 2 == 0 { &b } else { &c };
        let got = replay(node, "res", after).await;
        let lacking: Vec<usize> = (0..1200).filter(|&k| seqs[k + 1] > after).collect();
        let mut want = Vec::new();
        if after < seqs[0] {
            want.push(("message_started".to_owned(), seqs[0], None));
        }
        if let Some(&k) = lacking.first() {
            let from = (lacking.len() > 1).then_some(seqs[k + 1]);
            want.push(("message_delta".to_owned(), seqs[1200], from));
        }
        let kinds: Vec<(String, u64, Option<u64>)> = got
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("?").to_owned(),
                    e["seq"].as_u64().unwrap_or(0),
                    e["seq_from"].as_u64(),
                )
            })
            .collect();
        assert_eq!(kinds, want, "resume after {after}");
        let rest: String = lacking.iter().map(|&k| toks[k].as_str()).collect();
        let text = got
            .iter()
            .filter(|e| e["type"] == "message_delta")
            .map(|e| e["data"]["delta"].as_str().unwrap_or(""))
            .collect::<String>();
        assert_eq!(text, rest, "resume after {after}: the text differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_of_interleaved_messages_never_merge_and_keep_their_order() {
    let redis = RedisServer::start();
    let embedded = TestServer::start().await;
    let a = cluster_node(&redis, "a", |_| {}).await;
    let b = cluster_node(&redis, "b", |_| {}).await;
    let mut items = Vec::new();
    for i in 0..20 {
        for m in ["m1", "m2"] {
            items.push(message_event(
                "mix",
                "message_delta",
                m,
                Some(&format!("{m}:{i} ")),
            ));
        }
    }
    // Then a run of m1 alone, which merges again.
    for i in 20..25 {
        items.push(message_event(
            "mix",
            "message_delta",
            "m1",
            Some(&format!("m1:{i} ")),
        ));
    }
    let mut results = Vec::new();
    for (publisher, reader) in [(&embedded, &embedded), (&a, &b)] {
        let seqs = publish_all(publisher, &items).await;
        let base = seqs[0] - 1;
        let got: Vec<(String, u64, u64, String)> = replay(reader, "mix", base)
            .await
            .iter()
            .map(|e| {
                let seq = e["seq"].as_u64().unwrap_or(0) - base;
                let from = e["seq_from"].as_u64().map_or(seq, |f| f - base);
                let text = e["data"]["delta"].as_str().unwrap_or("").to_owned();
                (
                    e["data"]["message_id"].as_str().unwrap_or("?").to_owned(),
                    from,
                    seq,
                    text,
                )
            })
            .collect();
        results.push(got);
    }
    let cluster = &results[1];
    assert_eq!(cluster.len(), 41, "{cluster:?}");
    for (i, (m, from, seq, text)) in cluster[..40].iter().enumerate() {
        let want_m = if i % 2 == 0 { "m1" } else { "m2" };
        assert_eq!(
            (m.as_str(), *from, *seq),
            (want_m, i as u64 + 1, i as u64 + 1)
        );
        assert_eq!(text, &format!("{want_m}:{} ", i / 2));
    }
    assert_eq!(
        cluster[40],
        (
            "m1".to_owned(),
            41,
            45,
            "m1:20 m1:21 m1:22 m1:23 m1:24 ".to_owned()
        )
    );
    assert_eq!(xlen(&redis, "mix"), 41);
    assert_eq!(results[0], results[1], "embedded vs cluster");
}

/// The bytes each held entry is counted for, as the publish script counts them: `b` for
/// merged deltas, else the payload's frame length + `ENTRY_OVERHEAD`.
fn counted_bytes(held: &Entries) -> u64 {
    held.iter()
        .map(|(_, f)| match field(f, "b") {
            Some(b) => std::str::from_utf8(b).unwrap().parse::<u64>().unwrap(),
            None => {
                let p = field(f, "p").unwrap().len() as u64;
                p + if p > 65535 {
                    10
                } else if p > 125 {
                    4
                } else {
                    2
                } + 96
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_holds_for_merged_deltas_and_hb_is_what_the_stream_holds() {
    let redis = RedisServer::start();
    // A merged entry of 4 KiB of 8-byte tokens is counted ~12 KB (16 bytes per piece, as
    // embedded): two or three fit.
    let bound = 30_000;
    let a = cluster_node(&redis, "a", |c| c.max_history_bytes_per_user = bound).await;
    let b = cluster_node(&redis, "b", |c| c.max_history_bytes_per_user = bound).await;
    let toks = tokens(3000);
    let mut items = vec![message_event("hb", "message_started", "m1", None)];
    items.extend(
        toks.iter()
            .map(|t| message_event("hb", "message_delta", "m1", Some(t))),
    );
    let seqs = publish_all(&a, &items).await;
    let hb = |redis: &RedisServer| -> u64 {
        redis::cmd("HGET")
            .arg("ac:{hb}:m")
            .arg("hb")
            .query::<String>(&mut redis_conn(redis))
            .unwrap()
            .parse()
            .unwrap()
    };
    let held = entries(&redis, "hb");
    assert!(held.len() >= 2, "{} entries", held.len());
    assert_eq!(hb(&redis), counted_bytes(&held), "hb is exact");
    assert!(hb(&redis) <= bound as u64, "hb {} over {bound}", hb(&redis));
    // The front went: a resume from the start gets a gap, then the held tail of the text as
    // one delta, ending with the last token.
    let got = replay(&b, "hb", seqs[0] - 1).await;
    assert_eq!(got[0]["type"], "gap", "{}", got[0]);
    assert_eq!(got.len(), 2, "{got:?}");
    let from = got[1]["seq_from"].as_u64().unwrap();
    assert_eq!(got[0]["to"].as_u64(), Some(from - 1));
    assert_eq!(got[1]["seq"].as_u64(), Some(seqs[3000]));
    let first = seqs.iter().position(|&s| s == from).unwrap();
    let rest: String = toks[first - 1..].concat();
    assert_eq!(got[1]["data"]["delta"].as_str(), Some(rest.as_str()));
    // A completed message and a small event after it: hb stays exact.
    publish_all(
        &a,
        &[
            message_event("hb", "message_completed", "m1", None),
            json!({"user_id": "hb", "type": "note", "data": {}}),
        ],
    )
    .await;
    let held = entries(&redis, "hb");
    assert_eq!(hb(&redis), counted_bytes(&held));
    assert!(hb(&redis) <= bound as u64);
}
