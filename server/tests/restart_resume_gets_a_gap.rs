//! Restarts are honest: history lives in memory, so a restart of the real `agentcast` binary
//! loses every stored event, but seqs move forward across it. A client resuming with a
//! `last_seq` from before the restart always gets a `gap` up to the new process's seq base:
//! from inside its old history, and even from the old last seq (events may have been
//! published after it before the restart; the new process cannot know, so it says so). A
//! connection without `last_seq` gets neither replay nor gap: the node knows nothing of it.

use std::path::Path;
use std::time::Duration;

use agentcast_tests::{API_KEY, BinaryServer, SECRET, token};
use serde_json::json;

fn spawn() -> BinaryServer {
    BinaryServer::spawn(
        Path::new(env!("CARGO_BIN_EXE_agentcast")),
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("AGENTCAST_JWT_SECRET", SECRET),
            ("AGENTCAST_API_KEY", API_KEY),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_a_last_seq_from_before_a_restart_gets_a_gap() {
    let mut first = spawn();
    let api = first.api();
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(api.publish_user("survivor", json!({"i": i})).await);
    }
    let old_last = seqs[4];
    first.sigterm();
    let exit = first.wait_exit(Duration::from_secs(15));
    assert!(exit.success(), "exit {exit}; log:\n{}", first.log());

    let second = spawn();
    let api = second.api();
    let t = token("survivor");
    // From inside the lost history: everything after it is gone.
    let mut c = api
        .connect_query(&format!("token={t}&last_seq={}", seqs[2]))
        .await
        .unwrap_or_else(|e| panic!("connect: {e:?}; log:\n{}", second.log()));
    let base = c.welcome["last_seq"].as_u64().expect("welcome last_seq");
    assert!(base > old_last, "seqs moved forward: {base} <= {old_last}");
    // Read the expected message itself: a ping's pong can overtake a frame the engine
    // queued at connect, so `sync` cannot stand in for it.
    assert_eq!(
        c.next_json().await,
        json!({"type": "gap", "from": seqs[3], "to": base}),
        "the lost events are a gap"
    );
    assert!(c.sync().await.is_empty());
    // From the old last seq: the new process cannot know whether more followed.
    let mut d = api
        .connect_query(&format!("token={t}&last_seq={old_last}"))
        .await
        .expect("connect");
    assert_eq!(
        d.next_json().await,
        json!({"type": "gap", "from": old_last + 1, "to": base})
    );
    assert!(d.sync().await.is_empty());
    // Without last_seq the new process knows of nothing to replay or report (documented).
    let mut fresh = api.connect(&t).await;
    assert_eq!(fresh.welcome["last_seq"], base);
    assert!(fresh.sync().await.is_empty());
    // A new event continues above the base and reaches both.
    let next = api.publish_user("survivor", json!({"after": true})).await;
    assert_eq!(next, base + 1);
    assert_eq!(c.next_json().await["seq"], next);
    assert_eq!(d.next_json().await["seq"], next);
}
