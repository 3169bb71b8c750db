//! Acks, offline delivery and resume: a connection opened without `last_seq` never gets an
//! acknowledged event (an ack, from any device of the user, moves that default resume point);
//! events published while a user had no connection arrive on the next connect; `?last_seq=N`
//! is the device's own cursor, honoured exactly (even for events another device acked), and
//! reports a `gap` for events no longer held.

use std::time::Duration;

use agentcast_tests::{TestServer, token};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_events_are_not_replayed_on_reconnect() {
    let server = TestServer::start().await;
    let t = token("carol");
    let mut c = server.connect(&t).await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(server.publish_user("carol", json!({"i": i})).await);
    }
    for s in &seqs {
        assert_eq!(c.next_json().await["seq"], *s);
    }
    c.send_json(&json!({"type": "ack", "seq": seqs[2]})).await;
    c.sync().await;
    c.close().await;
    let mut again = server.connect(&t).await;
    assert_eq!(again.welcome["last_seq"], seqs[2]);
    again.expect_silence(Duration::from_millis(150)).await;
    let next = server.publish_user("carol", json!({"i": 3})).await;
    assert_eq!(again.next_json().await["seq"], next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_and_offline_events_arrive_on_the_next_connect() {
    let server = TestServer::start().await;
    let t = token("dave");
    let mut c = server.connect(&t).await;
    let first = server.publish_user("dave", json!({"i": 0})).await;
    assert_eq!(c.next_json().await["seq"], first);
    c.close().await;
    // Published while dave has no connection.
    let offline = server.publish_user("dave", json!({"i": 1})).await;
    let mut c = server.connect(&t).await;
    assert_eq!(c.next_json().await["seq"], first, "unacked event replayed");
    assert_eq!(
        c.next_json().await["seq"],
        offline,
        "offline event delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seq_resumes_after_n_and_reports_a_gap() {
    let server = TestServer::start_with(|c| c.tiers.free.history_len = 3).await;
    let t = token("erin");
    let mut c = server.connect(&t).await;
    let mut seqs = Vec::new();
    for i in 0..6 {
        seqs.push(server.publish_user("erin", json!({"i": i})).await);
    }
    for s in &seqs {
        assert_eq!(c.next_json().await["seq"], *s);
    }
    // Resume after the 4th event: only the 5th and 6th come again, no gap.
    let mut r = server
        .connect_query(&format!("token={t}&last_seq={}", seqs[3]))
        .await
        .unwrap();
    assert_eq!(r.next_json().await["seq"], seqs[4]);
    assert_eq!(r.next_json().await["seq"], seqs[5]);
    assert!(r.sync().await.is_empty());
    // Resume after the 1st: the 2nd and 3rd are gone (history holds 3).
    let mut g = server
        .connect_query(&format!("token={t}&last_seq={}", seqs[0]))
        .await
        .unwrap();
    let gap = g.next_json().await;
    assert_eq!(gap["type"], "gap", "{gap}");
    assert_eq!(gap["from"], seqs[1]);
    assert_eq!(gap["to"], seqs[2]);
    for s in &seqs[3..] {
        assert_eq!(g.next_json().await["seq"], *s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_resuming_with_its_own_last_seq_gets_exactly_what_it_missed_although_another_device_acked()
 {
    let server = TestServer::start().await;
    let t = token("frank");
    let mut phone = server.connect(&t).await;
    let mut laptop = server.connect(&t).await;
    let first = server.publish_user("frank", json!({"i": 0})).await;
    assert_eq!(phone.next_json().await["seq"], first);
    assert_eq!(laptop.next_json().await["seq"], first);
    // The laptop sleeps with its cursor at `first`.
    laptop.close().await;
    let missed = server.publish_user("frank", json!({"i": 1})).await;
    let (s, done) = server
        .publish(&json!({"user_id": "frank", "type": "agent_completed", "run_id": "r"}))
        .await;
    assert_eq!(s, 200, "{done}");
    let done = done["seq"].as_u64().expect("seq");
    assert_eq!(phone.next_json().await["seq"], missed);
    assert_eq!(phone.next_json().await["seq"], done);
    // The phone confirms everything.
    phone.send_json(&json!({"type": "ack", "seq": done})).await;
    assert!(phone.sync().await.is_empty());
    // The laptop wakes and asks for what it missed after its own cursor: exactly that.
    let mut laptop = server
        .connect_query(&format!("token={t}&last_seq={first}"))
        .await
        .expect("resume");
    // (A replay sends critical events first, then the rest.) Read by count: a pong can
    // overtake a replay.
    let got = laptop.take(2).await;
    assert!(laptop.sync().await.is_empty());
    let seqs: Vec<_> = got.iter().map(|e| e["seq"].clone()).collect();
    assert_eq!(seqs, vec![json!(done), json!(missed)], "{got:?}");
    assert_eq!(got[0]["type"], "agent_completed");
    assert!(got.iter().all(|e| e["type"] != "gap"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_last_seq_gets_nothing_another_device_acked() {
    let server = TestServer::start().await;
    let t = token("grace");
    let mut phone = server.connect(&t).await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(server.publish_user("grace", json!({"i": i})).await);
    }
    for s in &seqs {
        assert_eq!(phone.next_json().await["seq"], *s);
    }
    // Partial ack: a new device without last_seq gets only the unacknowledged rest.
    phone
        .send_json(&json!({"type": "ack", "seq": seqs[1]}))
        .await;
    assert!(phone.sync().await.is_empty());
    let mut tablet = server.connect(&t).await;
    let got = tablet.take(1).await;
    assert!(tablet.sync().await.is_empty());
    let got: Vec<_> = got.iter().map(|e| e["seq"].clone()).collect();
    assert_eq!(got, vec![json!(seqs[2])]);
    tablet.close().await;
    // Full ack: nothing at all, and new events still arrive.
    phone
        .send_json(&json!({"type": "ack", "seq": seqs[2]}))
        .await;
    assert!(phone.sync().await.is_empty());
    let mut tablet = server.connect(&t).await;
    assert_eq!(tablet.welcome["last_seq"], seqs[2]);
    assert!(
        tablet.sync().await.is_empty(),
        "an acknowledged event was sent again"
    );
    let next = server.publish_user("grace", json!({"i": 3})).await;
    assert_eq!(tablet.next_json().await["seq"], next);
}
