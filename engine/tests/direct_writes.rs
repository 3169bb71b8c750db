//! Direct writes (`agentcast_engine::sink`) never write a frame twice, never lose one, never
//! reorder them and never interleave one into another, whatever the socket does.
//!
//! A fake socket appends to one byte vector, the "wire". On each write by the shard's worker
//! it picks at random: take the whole frame, take a part of it, or say `WouldBlock`. A
//! transport thread plays the server's session: it waits for frames, claims the socket
//! (which drains), writes what it drained — sometimes only part per "write", sometimes with
//! a `pong` of its own after — and releases, or keeps the socket for a while. Meanwhile the
//! test publishes to the user and broadcasts. Both sides check that they are never inside a
//! write at the same time. At the end the wire must parse as whole WebSocket frames: every
//! event exactly once, in seq order, and each pong whole.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentcast_engine::{
    ConnectOptions, Connection, EventKind, Frame, Hub, HubConfig, Readiness, SocketSink, Target,
};
use common::{event, user};

/// A small xorshift generator: the test needs cheap randomness on two threads, reproducible
/// per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The shared "socket": the bytes written, and who is inside a write.
struct Wire {
    bytes: Mutex<Vec<u8>>,
    busy: AtomicBool,
}

impl Wire {
    /// One write of `buf[..n]`, asserting nobody else is writing.
    fn write(&self, buf: &[u8], who: &str) {
        assert!(
            !self.busy.swap(true, Ordering::AcqRel),
            "{who} wrote while another writer was inside a write"
        );
        self.bytes.lock().unwrap().extend_from_slice(buf);
        // Widen the window in which an overlap would be seen (a real write is a system
        // call of some microseconds).
        for _ in 0..500 {
            std::hint::spin_loop();
        }
        self.busy.store(false, Ordering::Release);
    }
}

struct FakeSink {
    wire: Arc<Wire>,
    rng: Mutex<Rng>,
    written: AtomicU64,
    partial: AtomicU64,
    blocked: AtomicU64,
}

impl SocketSink for FakeSink {
    fn try_write(&self, frame: &[u8]) -> std::io::Result<usize> {
        let pick = self.rng.lock().unwrap().below(10);
        let n = match pick {
            0..=5 => frame.len(),
            6 | 7 => {
                self.partial.fetch_add(1, Ordering::Relaxed);
                1 + self.rng.lock().unwrap().below(frame.len() as u64 - 1) as usize
            }
            _ => {
                self.blocked.fetch_add(1, Ordering::Relaxed);
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
        };
        self.wire.write(&frame[..n], "the worker");
        Ok(n)
    }

    fn written(&self, frames: u64, _born_us: u64) {
        self.written.fetch_add(frames, Ordering::Relaxed);
    }
}

/// The session's part: wait, claim (drains), write in random pieces, maybe add a pong,
/// release or keep the socket. Stops once `stop` is set and nothing is left.
fn spawn_transport(
    mut conn: Connection,
    wire: Arc<Wire>,
    seed: u64,
    stop: Arc<AtomicBool>,
    pongs: Arc<AtomicU64>,
    engine_frames: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut rng = Rng(seed | 1);
        let pong = Frame::text(br#"{"type":"pong"}"#).into_bytes();
        rt.block_on(async move {
            let mut out = Vec::new();
            let mut owned = true;
            loop {
                if owned && rng.below(4) != 0 {
                    conn.release_socket();
                    owned = false;
                }
                let wait = Duration::from_micros(50 + rng.below(450));
                let woke = tokio::time::timeout(wait, conn.ready()).await;
                if let Ok(Readiness::Closed(code)) = woke {
                    panic!("closed with {code}");
                }
                let idle = woke.is_err();
                if idle && stop.load(Ordering::Acquire) {
                    // Take the socket so a frame the worker queued after a would-block is
                    // written too, then end.
                    conn.claim_socket(&mut out, 1024);
                    while conn.drain_into(&mut out, 1024) > 0 {}
                    for f in out.drain(..) {
                        wire.write(&f, "the transport");
                    }
                    if conn.drain_into(&mut out, 1024) == 0 {
                        break;
                    }
                    continue;
                }
                // Woken for frames, or a timer of its own (a heartbeat ping, a reply).
                let own_frame = idle || rng.below(5) == 0;
                if !idle || own_frame {
                    let mine = usize::from(own_frame);
                    if own_frame {
                        out.push(pong.clone());
                    }
                    if owned {
                        conn.drain_into(&mut out, 64);
                    } else {
                        // As the session does: what the engine handed goes before its own.
                        conn.claim_socket(&mut out, 64);
                        out.rotate_left(mine);
                        owned = true;
                    }
                    if own_frame {
                        pongs.fetch_add(1, Ordering::Relaxed);
                    }
                    if rng.below(3) == 0 {
                        // A write that waits for room: the socket stays claimed meanwhile.
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    // Written in random pieces, each a separate "write" call.
                    engine_frames.fetch_add((out.len() - mine) as u64, Ordering::Relaxed);
                    for f in out.drain(..) {
                        let mut at = 0;
                        while at < f.len() {
                            let n = 1 + rng.below((f.len() - at) as u64) as usize;
                            wire.write(&f[at..at + n], "the transport");
                            at += n;
                        }
                    }
                }
            }
        });
    })
}

/// Splits `wire` into whole WebSocket frames (server frames: unmasked) and returns their
/// payloads; an error for a frame cut short (the last) or interleaved (a bad header).
fn try_frames(wire: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        if wire[at] != 0x81 {
            return Err(format!("byte {at} starts no text frame: {:#x}", wire[at]));
        }
        let Some(&b1) = wire.get(at + 1) else {
            return Err("cut short".into());
        };
        let (len, head) = match b1 {
            126 if wire.len() >= at + 4 => {
                (u16::from_be_bytes([wire[at + 2], wire[at + 3]]) as usize, 4)
            }
            126 => return Err("cut short".into()),
            127 => return Err(format!("byte {at}: no frame here is that large")),
            n => (n as usize, 2),
        };
        let start = at + head;
        if start + len > wire.len() {
            return Err("cut short".into());
        }
        out.push(&wire[start..start + len]);
        at = start + len;
    }
    Ok(out)
}

fn frames(wire: &[u8]) -> Vec<&[u8]> {
    try_frames(wire).unwrap_or_else(|e| panic!("the wire is not whole frames: {e}"))
}

fn run(seed: u64, events: u64) {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    // A small hand-off queue, so the ring and refills take part too; a ring that never
    // overflows, so every event must arrive.
    cfg.write_batch = 4;
    cfg.ring_capacity = 1 << 16;
    let hub = Hub::start(cfg).expect("hub starts");
    let alice = user("alice");
    let conn = hub
        .connect(alice.clone(), ConnectOptions::default())
        .wait()
        .expect("connects");
    let wire = Arc::new(Wire {
        bytes: Mutex::new(Vec::new()),
        busy: AtomicBool::new(false),
    });
    let sink = Arc::new(FakeSink {
        wire: Arc::clone(&wire),
        rng: Mutex::new(Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)),
        written: AtomicU64::new(0),
        partial: AtomicU64::new(0),
        blocked: AtomicU64::new(0),
    });
    conn.attach_sink(Arc::clone(&sink) as Arc<dyn SocketSink>);
    let stop = Arc::new(AtomicBool::new(false));
    let pongs = Arc::new(AtomicU64::new(0));
    let engine_frames = Arc::new(AtomicU64::new(0));
    let transport = spawn_transport(
        conn,
        Arc::clone(&wire),
        seed,
        Arc::clone(&stop),
        Arc::clone(&pongs),
        Arc::clone(&engine_frames),
    );
    let mut rng = Rng(seed ^ 0xDEAD_BEEF);
    let mut broadcasts = 0u64;
    for i in 0..events {
        if rng.below(8) == 0 {
            hub.publish(
                Target::Broadcast,
                event(
                    EventKind::Custom("note".into()),
                    "r",
                    &format!(r#"{{"b":{i}}}"#),
                ),
            )
            .expect("broadcast accepted")
            .wait()
            .expect("receipt");
            broadcasts += 1;
        }
        hub.publish(
            Target::User(alice.clone()),
            event(
                EventKind::Custom("step".into()),
                "r",
                &format!(r#"{{"i":{i}}}"#),
            ),
        )
        .expect("publish accepted")
        .wait()
        .expect("receipt");
        // Bursts of 1 to 8 events, then a wait until the transport caught up (frames it
        // took plus frames the worker wrote whole), so the socket is free again and the
        // next burst starts with direct writes.
        if rng.below(4) == 0 {
            let published = i + 1 + broadcasts;
            let deadline = Instant::now() + Duration::from_secs(10);
            while engine_frames.load(Ordering::Relaxed) + sink.written.load(Ordering::Relaxed)
                < published
            {
                assert!(
                    Instant::now() < deadline,
                    "seed {seed}: the transport stalled"
                );
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
    // Every frame reached the wire: the events, the broadcasts and the pongs.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = {
            let bytes = wire.bytes.lock().unwrap();
            try_frames(&bytes).map(|f| f.len() as u64)
        };
        if n == Ok(events + broadcasts + pongs.load(Ordering::Relaxed)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: frames missing: {n:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Release);
    transport.join().expect("the transport thread ends");
    let bytes = wire.bytes.lock().unwrap().clone();
    let mut seqs = Vec::new();
    let mut seen_broadcasts = 0;
    let mut seen_pongs = 0;
    for payload in frames(&bytes) {
        let v: serde_json::Value = serde_json::from_slice(payload).expect("JSON payload");
        match v["type"].as_str() {
            Some("pong") => seen_pongs += 1,
            Some("note") => seen_broadcasts += 1,
            Some("step") => seqs.push(v["seq"].as_u64().expect("seq")),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(seqs.len() as u64, events, "seed {seed}: every event once");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seed {seed}: events in seq order, none twice"
    );
    assert_eq!(seen_broadcasts, broadcasts, "seed {seed}");
    assert_eq!(seen_pongs, pongs.load(Ordering::Relaxed), "seed {seed}");
    // The interleavings the test is for did happen.
    let direct = sink.written.load(Ordering::Relaxed);
    let stats = hub.stats().total;
    assert_eq!(stats.direct_writes, direct, "seed {seed}: counted as told");
    eprintln!(
        "seed {seed}: direct {direct} handed {} drained {} partial {} blocked {}",
        stats.handed,
        stats.drained,
        sink.partial.load(Ordering::Relaxed),
        sink.blocked.load(Ordering::Relaxed)
    );
    assert!(direct > 0, "seed {seed}: the worker wrote directly");
    assert!(sink.partial.load(Ordering::Relaxed) > 0, "seed {seed}");
    assert!(sink.blocked.load(Ordering::Relaxed) > 0, "seed {seed}");
    assert!(
        stats.drained > 0,
        "seed {seed}: the transport wrote queued frames too"
    );
}

#[test]
fn direct_writes_keep_every_frame_once_and_in_order() {
    for seed in 1..=12u64 {
        run(seed, 1_500);
    }
}

/// Without a sink the worker never writes: the transport keeps every frame, as before.
#[test]
fn a_connection_without_a_sink_gets_every_frame_through_its_queue() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    let hub = Hub::start(cfg).expect("hub starts");
    let bob = user("bob");
    let mut conn = hub
        .connect(bob.clone(), ConnectOptions::default())
        .wait()
        .expect("connects");
    // Released, but with no sink given: still nothing is written directly.
    conn.release_socket();
    for i in 0..50 {
        hub.publish(
            Target::User(bob.clone()),
            event(
                EventKind::Custom("step".into()),
                "r",
                &format!(r#"{{"i":{i}}}"#),
            ),
        )
        .unwrap()
        .wait()
        .unwrap();
    }
    let got = common::drain_n(&mut conn, 50, Duration::from_secs(5));
    assert_eq!(got.len(), 50);
    assert_eq!(hub.stats().total.direct_writes, 0);
}

/// A sink that takes every write whole and counts the bytes.
struct CountingSink(AtomicU64);

impl SocketSink for CountingSink {
    fn try_write(&self, frame: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(frame.len())
    }

    fn written(&self, _frames: u64, _born_us: u64) {}
}

/// Past `direct_write_budget` the worker stops writing and hands the frame to the rest of the
/// connections' queues: with a zero budget, only the writes before the first clock check
/// (every 16 writes) are direct, and every connection still gets the broadcast.
#[test]
fn past_the_write_budget_the_rest_of_a_broadcast_goes_through_the_queues() {
    let mut cfg = HubConfig::default();
    cfg.shards = 1;
    cfg.direct_write_budget = Duration::ZERO;
    let hub = Hub::start(cfg).expect("hub starts");
    let sink = Arc::new(CountingSink(AtomicU64::new(0)));
    let mut conns = Vec::new();
    for i in 0..40 {
        let c = hub
            .connect(user(&format!("u{i}")), ConnectOptions::default())
            .wait()
            .expect("connects");
        c.attach_sink(Arc::clone(&sink) as Arc<dyn SocketSink>);
        c.release_socket();
        conns.push(c);
    }
    // A command after the attaches: every sink is in place when the broadcast is handled.
    hub.publish(
        Target::User(user("u0")),
        event(EventKind::Custom("x".into()), "r", "{}"),
    )
    .unwrap()
    .wait()
    .unwrap();
    // The write comes right after the receipt (see `Shard::write_deferred`).
    let deadline = Instant::now() + Duration::from_secs(5);
    while sink.0.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the event to u0 is written directly"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = sink.0.load(Ordering::Relaxed);
    assert_eq!(before, 1, "the event to u0 was written directly");
    let receipt = hub
        .publish(
            Target::Broadcast,
            event(EventKind::Custom("b".into()), "r", "{}"),
        )
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        receipt.connections, 40,
        "the receipt counts every connection"
    );
    // Each connection got it once: written, or in its queue.
    let mut queued = 0;
    for c in &mut conns {
        queued += common::drain_n(c, 1, Duration::from_millis(200)).len();
    }
    let direct = sink.0.load(Ordering::Relaxed) - before;
    assert_eq!(direct, 15, "direct writes until the first clock check");
    assert_eq!(queued, 25, "the rest through the queues");
    // A command after the broadcast: its counters are flushed when it is answered.
    hub.publish(
        Target::User(user("u1")),
        event(EventKind::Custom("x".into()), "r", "{}"),
    )
    .unwrap()
    .wait()
    .unwrap();
    let stats = hub.stats().total;
    assert!(stats.direct_writes >= 16, "{stats:?}");
    assert!(stats.handed >= 25, "{stats:?}");
}
