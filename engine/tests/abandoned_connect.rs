//! A registration whose `Connecting` is dropped (a client that went away mid-handshake) is
//! undone, whether the shard answered before or after the drop: nothing stays registered.

mod common;

use std::time::Duration;

use common::{hub, user};

#[test]
fn dropping_a_connecting_never_leaks_a_registration() {
    let hub = hub(2);
    // Dropped at once: usually before the shard handled the connect.
    for i in 0..2_000 {
        drop(hub.connect(user(&format!("a{i}")), Default::default()));
    }
    // Dropped after the shard answered.
    let late: Vec<_> = (0..200)
        .map(|i| hub.connect(user(&format!("b{i}")), Default::default()))
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    drop(late);
    hub.sync_blocking(false).unwrap();
    hub.sync_blocking(false).unwrap();
    let f = hub.footprint_blocking().unwrap();
    assert_eq!(f.connections, 0, "{f:?}");
    let s = hub.stats();
    assert_eq!(s.total.connects, s.total.disconnects, "{s:?}");
    // A connection that was taken is still a connection.
    let kept = hub
        .connect(user("kept"), Default::default())
        .wait()
        .unwrap();
    assert_eq!(hub.footprint_blocking().unwrap().connections, 1);
    drop(kept);
}
