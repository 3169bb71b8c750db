//! Hostile connections: handshakes that never complete (slowloris), thousands of idle
//! half-open sockets, upgraded clients that go silent, and connect/disconnect storms (clean
//! closes and abrupt resets). Each is cut off by its documented limit, the probe keeps
//! receiving within 1 s, and the engine returns to its baseline connection count.

mod hostile;

use std::time::{Duration, Instant};

use agentcast_tests::{TestServer, token};
use futures_util::future::join_all;
use hostile::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects, retrying a refused or reset attempt (a burst of connects can overflow the
/// listen backlog while the accept loop catches up).
async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    for _ in 0..20 {
        if let Ok(s) = TcpStream::connect(addr).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to {addr}");
}

/// Reads until EOF or reset; returns how long it took.
async fn until_dropped(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_are_cut_off_and_the_probe_keeps_receiving() {
    let server = TestServer::start_with(|c| {
        c.limits.handshake_timeout_ms = 500;
        // Long enough for all 300 silent clients below to be open at once, even on a loaded
        // machine, before the first of them is closed.
        c.heartbeat_ms = 1000;
        c.idle_timeout_ms = 3000;
        // The storms below reuse 100 user ids; the per-user limit is not what is tested here.
        c.tiers.free.connections_per_user = 1000;
    })
    .await;
    let mut probe = Probe::connect(&server, "conns").await;
    // The probe reads its socket all the time, so it answers the heartbeat and survives the
    // short idle timeout that cuts off the silent clients below.
    let ledger = Ledger::start("connections", &server, 1).await;

    // 1. Slowloris: 200 handshakes that send one header byte every 100 ms and never finish.
    let head = b"GET /ws?token=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: ";
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(connect(server.addr).await);
    }
    let trickle = tokio::spawn(async move {
        let start = Instant::now();
        let mut dropped = vec![None; slow.len()];
        for (i, b) in head.iter().cycle().enumerate() {
            for (j, s) in slow.iter_mut().enumerate() {
                if dropped[j].is_none() && s.write_all(&[*b]).await.is_err() {
                    dropped[j] = Some(start.elapsed());
                }
            }
            if dropped.iter().all(Option::is_some) || i > 40 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (slow, start)
    });
    probe.check(&server, "during slowloris").await;
    let (slow, start) = trickle.await.unwrap();
    let waits = join_all(
        slow.into_iter()
            .map(|s| until_dropped(s, Duration::from_secs(3))),
    )
    .await;
    assert!(
        waits.iter().all(Option::is_some),
        "a slowloris socket survived"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    ledger.cases(200);
    probe.check(&server, "slowloris").await;

    // 2. 2,500 idle half-open sockets: connected, never a byte. All dropped by the handshake
    //    timeout; meanwhile the probe is served.
    let mut idle = Vec::with_capacity(2500);
    for _ in 0..2500 {
        idle.push(connect(server.addr).await);
    }
    probe.check(&server, "2,500 idle sockets open").await;
    let start = Instant::now();
    let waits = join_all(
        idle.into_iter()
            .map(|s| until_dropped(s, Duration::from_secs(5))),
    )
    .await;
    let survivors = waits.iter().filter(|w| w.is_none()).count();
    assert_eq!(survivors, 0, "idle sockets not dropped");
    println!("2,500 idle sockets dropped within {:?}", start.elapsed());
    ledger.cases(2500);
    probe.check(&server, "idle half-open sockets").await;

    // 3. 300 upgraded clients that go silent (never read, never answer pings): closed by the
    //    idle timeout (1001), their engine connections released.
    let mut silent = Vec::new();
    for i in 0..300 {
        silent.push(raw_ws(&server, &format!("silent-{}", i % 50)).await);
    }
    assert_eq!(held(&server).await.connections, 301);
    probe.check(&server, "300 silent clients").await;
    let codes = join_all(silent.iter_mut().map(close_code)).await;
    assert!(codes.iter().all(|c| *c == Some(1001)), "{codes:?}");
    settle(&server, 1).await;
    ledger.cases(300);
    probe.check(&server, "silent upgraded clients").await;

    // 4. Connect/disconnect storm: 40 tasks × 25 cycles; half close cleanly, half drop the
    //    TCP connection right after the upgrade.
    let addr = server.addr;
    let storm = (0..40).map(|t| async move {
        for i in 0..25 {
            let user = format!("storm-{}", (t * 25 + i) % 100);
            let mut s = connect(addr).await;
            let req = format!(
                "GET /ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                token(&user)
            );
            s.write_all(req.as_bytes()).await.unwrap();
            if i % 2 == 0 {
                let head = read_head(&mut s).await;
                assert!(head.starts_with("HTTP/1.1 101"), "{head}");
                let _ = s.write_all(&frame(true, 8, &1000u16.to_be_bytes())).await;
                let _ = close_code(&mut s).await;
            } else {
                // Abrupt: RST right after the request (SO_LINGER 0).
                let _ = s.set_zero_linger();
            }
        }
    });
    let start = Instant::now();
    tokio::join!(join_all(storm), probe.check(&server, "during the storm"));
    println!("1,000 connect/disconnect cycles in {:?}", start.elapsed());
    ledger.cases(1000);
    probe.check(&server, "connect/disconnect storm").await;

    // Users given state after the baseline: storm-0..99 and silent-0..49.
    ledger.finish(&server, &probe, 64 * 1024, 150).await;
}
