//! Unit tests of the receiver: classification, reassembly, pongs, the broadcast window,
//! frame headers.

use super::*;

fn ctx() -> Ctx {
    let cfg = crate::Config {
        jwt_secret: Some("bench-unit-test-secret-of-32-bytes".into()),
        ..crate::Config::default()
    };
    Ctx {
        plan: ReceiverPlan {
            addr: "127.0.0.1:1".parse().unwrap(),
            host: "x".into(),
            source_ip: None,
            first: 0,
            count: 2,
            users: 2,
            run: 7,
            connect_rate: 1.0,
            reconnect: false,
        },
        auth: Arc::new(Authenticator::from_config(&cfg).unwrap()),
        progress: Arc::default(),
        counts: RefCell::new(Counts {
            hist: new_histogram(),
            conns_of_user: vec![0; 2],
            recv_of_user: vec![0; 2],
            leaks: 0,
            duplicates: 0,
            stale: 0,
            protocol_errors: 0,
            first_error: None,
            seq_holes: 0,
            resumes: 0,
            reconnect_failures: 0,
            reconnect_failure_reasons: Default::default(),
            first_disconnect_unix_ms: None,
            last_resume_unix_ms: None,
            frame_bytes: 0,
        }),
    }
}

/// A fixed send time; tests pass `SENT + 1 ms` as now.
const SENT: u64 = 1_764_000_000_000_000_000;

fn event(server_seq: Option<u64>, run: u32, user: u32, seq: u64, measured: bool) -> Vec<u8> {
    let mut f = match server_seq {
        Some(s) => format!(r#"{{"type":"tool_executing","seq":{s},"data":"#).into_bytes(),
        None => br#"{"type":"tool_executing","channel":"*","data":"#.to_vec(),
    };
    let p = super::super::payload::Probe {
        run,
        sent_ns: SENT,
        user,
        seq,
        measured,
    };
    super::super::payload::write_data(&mut f, &p, 128);
    f.push(b'}');
    f
}

#[test]
fn events_are_classified_as_received_leaked_duplicate_or_stale() {
    let ctx = ctx();
    let mut conn = Conn {
        user: 1,
        pending: Vec::new(),
        last_server_seq: 0,
        broadcasts: SeenWindow::default(),
        resumes: 0,
    };
    let now = SENT + 1_000_000;
    assert_eq!(conn.text(&ctx, &event(Some(1), 7, 1, 1, true), now), 1);
    assert_eq!(
        conn.text(&ctx, &event(Some(2), 7, 0, 1, true), now),
        0,
        "leak"
    );
    assert_eq!(conn.text(&ctx, &event(Some(2), 7, 1, 2, true), now), 1);
    assert_eq!(
        conn.text(&ctx, &event(Some(2), 7, 1, 2, true), now),
        0,
        "dup"
    );
    assert_eq!(
        conn.text(&ctx, &event(Some(9), 8, 1, 3, true), now),
        0,
        "stale"
    );
    assert_eq!(
        conn.text(&ctx, &event(Some(3), 7, 1, 3, false), now),
        0,
        "warm-up"
    );
    assert_eq!(
        conn.text(&ctx, &event(None, 7, BROADCAST_USER, 1, true), now),
        1
    );
    assert_eq!(
        conn.text(&ctx, &event(None, 7, BROADCAST_USER, 1, true), now),
        0,
        "dup"
    );
    assert_eq!(conn.text(&ctx, br#"{"type":"welcome"}"#, now), 0);
    let c = ctx.counts.borrow();
    assert_eq!((c.leaks, c.duplicates, c.stale), (1, 2, 1));
    assert_eq!(c.recv_of_user, vec![0, 3]);
    assert_eq!(c.hist.len(), 3);
    assert!(
        c.hist.min() >= 900_000 && c.hist.max() < 1_000_000_000,
        "latency is now - t"
    );
}

#[test]
fn split_frames_are_reassembled_and_pings_answered() {
    let ctx = ctx();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let mut conn = Conn {
            user: 1,
            pending: Vec::new(),
            last_server_seq: 0,
            broadcasts: SeenWindow::default(),
            resumes: 0,
        };
        let payload = event(Some(1), 7, 1, 1, true);
        let mut wire = vec![0x81, 126];
        wire.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        wire.extend_from_slice(&payload);
        wire.extend_from_slice(&[0x89, 2, b'h', b'i']);
        let (a, b) = wire.split_at(60);
        assert!(conn.input(&ctx, &stream, a));
        assert_eq!(conn.pending.len(), 60);
        assert!(conn.input(&ctx, &stream, b));
        assert!(conn.pending.is_empty() && conn.pending.capacity() == 0);
        assert_eq!(ctx.counts.borrow().recv_of_user[1], 1);
        // The measured frame's size on the wire, header included (what `--floor` writes).
        assert_eq!(ctx.counts.borrow().frame_bytes, 4 + payload.len() as u64);
        // The pong: FIN | pong, masked, 2 bytes, unmasked back to "hi".
        let mut pong = [0u8; 8];
        std::io::Read::read_exact(&mut peer, &mut pong).unwrap();
        assert_eq!(&pong[..2], &[0x8a, 0x82]);
        assert_eq!([pong[6] ^ pong[2], pong[7] ^ pong[3]], *b"hi");
        // A close frame ends the connection.
        assert!(!conn.input(&ctx, &stream, &[0x88, 0]));
    });
}

#[test]
fn the_broadcast_window_allows_reordering_but_not_repeats() {
    let mut w = SeenWindow::default();
    assert!(w.first_time(2));
    assert!(w.first_time(1), "late but new");
    assert!(!w.first_time(2));
    assert!(!w.first_time(1));
    assert!(w.first_time(100));
    assert!(w.first_time(40));
    assert!(!w.first_time(36), "older than the window");
    assert!(!w.first_time(40));
    assert!(w.first_time(1000));
    assert!(!w.first_time(100));
}

#[test]
fn server_frame_headers_decode() {
    assert_eq!(frame_header(&[0x81, 5, b'h']), Ok(Some((1, 2, 5))));
    assert_eq!(frame_header(&[0x81, 126, 1, 0]), Ok(Some((1, 4, 256))));
    assert_eq!(
        frame_header(&[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        Ok(Some((1, 10, 65536)))
    );
    assert_eq!(frame_header(&[0x89, 0]), Ok(Some((9, 2, 0))));
}

#[test]
fn incomplete_headers_wait_for_more() {
    assert_eq!(frame_header(&[]), Ok(None));
    assert_eq!(frame_header(&[0x81]), Ok(None));
    assert_eq!(frame_header(&[0x81, 126, 1]), Ok(None));
    assert_eq!(frame_header(&[0x81, 127, 0, 0, 0]), Ok(None));
}

#[test]
fn what_a_server_must_not_send_is_refused() {
    assert!(frame_header(&[0x01, 1]).is_err(), "fragment");
    assert!(frame_header(&[0x80, 1]).is_err(), "continuation");
    assert!(frame_header(&[0xc1, 1]).is_err(), "rsv1");
    assert!(frame_header(&[0x81, 0x81]).is_err(), "masked");
    assert!(frame_header(&[0x89, 126, 0, 200]).is_err(), "big ping");
    assert!(
        frame_header(&[0x81, 127, 0, 0, 0, 0, 1, 0, 0, 0]).is_err(),
        "huge"
    );
}

#[test]
fn failed_reconnects_are_counted_by_why() {
    assert_eq!(
        failure_reason("upgrade refused: HTTP/1.1 503 Service Unavailable"),
        "503"
    );
    assert_eq!(
        failure_reason("upgrade refused: HTTP/1.1 429 Too Many Requests"),
        "429"
    );
    assert_eq!(
        failure_reason("connect 127.0.0.1:8080: Connection refused (os error 111)"),
        "connect"
    );
    assert_eq!(
        failure_reason("bind 127.0.0.2: Address already in use"),
        "connect"
    );
    assert_eq!(
        failure_reason("reading the upgrade response: Connection reset by peer"),
        "io"
    );
    let c = ctx();
    failed_attempt(&c, "503");
    failed_attempt(&c, "503");
    failed_attempt(&c, "timeout");
    let counts = c.counts.borrow();
    assert_eq!(counts.reconnect_failures, 3);
    assert_eq!(counts.reconnect_failure_reasons["503"], 2);
    assert_eq!(counts.reconnect_failure_reasons["timeout"], 1);
}
