//! Hostile WebSocket frames over raw TCP, each answered with its documented close code or
//! `error` message, while a well-behaved probe client keeps receiving its events within 1 s
//! and the server's memory returns to its baseline: invalid UTF-8, unmasked frames, reserved
//! opcodes and bits, fragmented and oversized control frames, bad close frames, broken
//! fragmentation, a 16 MiB length header (1009), a 256 KiB one (skipped), a frame trickled one byte at a time, ping floods
//! and message floods.

mod hostile;

use std::time::Duration;

use hostile::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use agentcast_tests::TestServer;

/// Sends `wire` on a fresh raw connection and expects the server to close with `code`.
async fn expect_close(server: &TestServer, case: &str, wire: &[u8], code: u16) {
    let mut s = raw_ws(server, "hostile").await;
    // The server may close before reading everything: a failed write is not the point here.
    let _ = s.write_all(wire).await;
    let answer = read_until(&mut s, |_| false).await;
    assert_eq!(answer.close, Some(code), "{case}: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_get_their_close_code_and_the_probe_keeps_receiving() {
    let server = TestServer::start().await;
    let mut probe = Probe::connect(&server, "frames").await;
    let ledger = Ledger::start("frames", &server, 1).await;

    let mut long_len = vec![0x82, 0x80 | 127];
    long_len.extend_from_slice(&u64::MAX.to_be_bytes());
    long_len.extend_from_slice(&MASK);
    let mut huge_len = vec![0x81, 0x80 | 127];
    huge_len.extend_from_slice(&(16u64 << 20).to_be_bytes());
    huge_len.extend_from_slice(&MASK);
    let mut close_1005 = 1005u16.to_be_bytes().to_vec();
    close_1005.extend_from_slice(b"reserved");
    let mut close_bad_reason = 1000u16.to_be_bytes().to_vec();
    close_bad_reason.extend_from_slice(&[0xc3, 0x28]);
    let mut unmasked = vec![0x81, 0x02];
    unmasked.extend_from_slice(b"hi");
    let mut rsv = Vec::new();
    for bit in [0x40u8, 0x20, 0x10] {
        let mut f = text("{\"type\":\"ping\"}");
        f[0] |= bit;
        rsv.push((format!("RSV bit {bit:#x}"), f));
    }
    let mut cases: Vec<(String, Vec<u8>, u16)> = vec![
        (
            "invalid UTF-8 text".into(),
            frame(true, 1, &[0xff, 0xfe, 0xfd]),
            1007,
        ),
        (
            "UTF-8 broken across fragments".into(),
            [frame(false, 1, &[0xe2, 0x82]), frame(true, 0, &[0x28])].concat(),
            1007,
        ),
        (
            "overlong UTF-8 encoding".into(),
            frame(true, 1, &[0xc0, 0xaf]),
            1007,
        ),
        (
            "UTF-16 surrogate in UTF-8".into(),
            frame(true, 1, &[0xed, 0xa0, 0x80]),
            1007,
        ),
        ("unmasked client frame".into(), unmasked, 1002),
        ("fragmented ping".into(), frame(false, 9, b"x"), 1002),
        (
            "ping with 126-byte payload".into(),
            frame(true, 9, &[0; 126]),
            1002,
        ),
        ("fragmented close".into(), frame(false, 8, b""), 1002),
        (
            "pong with 64 KiB payload".into(),
            frame(true, 0xA, &vec![0; 65536]),
            1002,
        ),
        ("stray continuation".into(), frame(true, 0, b"x"), 1002),
        (
            "new data frame inside a fragmented message".into(),
            [frame(false, 1, b"{"), frame(true, 1, b"}")].concat(),
            1002,
        ),
        ("64-bit length with the top bit set".into(), long_len, 1002),
        ("16 MiB length header".into(), huge_len, 1009),
        (
            "close with a 1-byte payload".into(),
            frame(true, 8, &[3]),
            1002,
        ),
        (
            "close with reserved code 1005".into(),
            frame(true, 8, &close_1005),
            1002,
        ),
        (
            "close with invalid UTF-8 reason".into(),
            frame(true, 8, &close_bad_reason),
            1007,
        ),
    ];
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        cases.push((
            format!("reserved opcode {op:#x}"),
            frame(true, op, b"x"),
            1002,
        ));
    }
    cases.extend(rsv.into_iter().map(|(n, f)| (n, f, 1002)));
    for (case, wire, code) in &cases {
        expect_close(&server, case, wire, *code).await;
        ledger.case();
        probe.check(&server, case).await;
    }

    // A client close is echoed with its code.
    let mut s = raw_ws(&server, "hostile").await;
    s.write_all(&frame(true, 8, &4000u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut s).await, Some(4000));
    ledger.case();
    probe.check(&server, "client close 4000").await;

    // A 256 KiB length header (64 x the 4 KiB limit, the most that is skipped rather than
    // closed): answered at once with `too_large`, the payload streams through unbuffered, and
    // the connection stays usable. (A 16 MiB header closes with 1009 above.)
    let mut s = raw_ws(&server, "hostile").await;
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(256u64 << 10).to_be_bytes());
    header.extend_from_slice(&MASK);
    s.write_all(&header).await.unwrap();
    let a = read_until(&mut s, |a| !a.messages.is_empty()).await;
    assert_eq!(a.error_codes(), ["too_large"], "{a:?}");
    let rss_before = rss_kib();
    let chunk = vec![b'a'; 64 << 10];
    for _ in 0..4 {
        s.write_all(&chunk).await.unwrap();
    }
    s.write_all(&text("{\"type\":\"ping\"}")).await.unwrap();
    let a = read_until(&mut s, |a| !a.messages.is_empty()).await;
    assert_eq!(a.messages, [json!({"type": "pong"})], "{a:?}");
    println!(
        "256 KiB payload streamed: RSS {rss_before} KiB -> {} KiB",
        rss_kib()
    );
    ledger.case();
    probe.check(&server, "256 KiB length header").await;
    drop(s);

    // An oversize text message (5,000 bytes, limit 4 KiB) and a binary message: an error
    // each, the connection stays open.
    let mut s = raw_ws(&server, "hostile").await;
    s.write_all(&text(&"x".repeat(5000))).await.unwrap();
    s.write_all(&frame(true, 2, b"\x00\x01")).await.unwrap();
    s.write_all(&text("{\"type\":\"ping\"}")).await.unwrap();
    let a = read_until(&mut s, |a| a.messages.len() == 3).await;
    assert_eq!(a.error_codes(), ["too_large", "bad_message"], "{a:?}");
    assert_eq!(a.messages[2]["type"], "pong");
    ledger.cases(2);
    probe.check(&server, "oversize and binary messages").await;
    drop(s);

    // A frame trickled one byte at a time (5 ms apart) is decoded like any other; the probe
    // keeps receiving during the trickle.
    let mut s = raw_ws(&server, "hostile").await;
    let wire = text("{\"type\":\"ping\"}");
    for (i, b) in wire.iter().enumerate() {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        if i == wire.len() / 2 {
            probe.check(&server, "mid-trickle").await;
        }
    }
    let a = read_until(&mut s, |a| !a.messages.is_empty()).await;
    assert_eq!(a.messages, [json!({"type": "pong"})]);
    ledger.case();
    probe.check(&server, "byte-at-a-time trickle").await;
    drop(s);

    // Ping flood: 10,000 WebSocket pings in one burst. The first `rate_burst` (40) are
    // answered with pongs, the excess gets `rate_limited` errors, and the 20th error within
    // the abuse window closes the connection with 1008.
    let mut s = raw_ws(&server, "hostile").await;
    let flood: Vec<u8> = (0..10_000).flat_map(|_| frame(true, 9, b"flood")).collect();
    let _ = s.write_all(&flood).await; // the server may close before reading it all
    let a = read_until(&mut s, |_| false).await;
    assert_eq!(a.close, Some(1008), "ping flood: {a:?}");
    // 40 = the burst; a token refilled during the burst (20/s) may add one.
    assert!((40..=42).contains(&a.pongs), "ping flood: {a:?}");
    assert_eq!(a.error_codes(), vec!["rate_limited"; 20]);
    ledger.case();
    probe.check(&server, "ping flood").await;

    // Message flood: 10,000 `{"type":"ping"}` messages: 40 pongs, then the same close.
    let mut s = raw_ws(&server, "hostile").await;
    let flood: Vec<u8> = (0..10_000)
        .flat_map(|_| text("{\"type\":\"ping\"}"))
        .collect();
    let _ = s.write_all(&flood).await;
    let a = read_until(&mut s, |_| false).await;
    assert_eq!(a.close, Some(1008), "message flood");
    let pongs = a.messages.iter().filter(|m| m["type"] == "pong").count();
    assert!((40..=42).contains(&pongs), "{pongs}");
    assert_eq!(a.error_codes(), vec!["rate_limited"; 20]);
    ledger.case();
    probe.check(&server, "message flood").await;

    // Garbage bytes (not a frame at all).
    expect_close(
        &server,
        "HTTP bytes after upgrade",
        b"GET / HTTP/1.1\r\n\r\n",
        1002,
    )
    .await;
    ledger.case();
    probe.check(&server, "garbage").await;

    // Users given state after the baseline: `hostile`.
    ledger.finish(&server, &probe, 64 * 1024, 1).await;
}
