//! What an idle WebSocket connection costs the server's heap, counted by a global allocator
//! that tracks live bytes: at most [`BOUND`] bytes per connection with 256 idle connections of
//! 128 users (a release build measured about 3.9 KiB per connection at 5,000, slab and user
//! tables included; see the session's module docs).
//!
//! The bound catches the leak this test was written for: hyper's reads had left the HTTP
//! task's waker in the socket's reader slot, the session waited with `readable()` (another
//! slot), and a client that never sent a byte kept the finished HTTP task (1.4 KiB) allocated
//! for as long as it stayed connected. It also catches the task's future growing back to its
//! old 2.1 KiB.
//!
//! The clients are blocking `std` sockets on their own thread, which allocate nothing per
//! connection, so the count is the server's. This binary holds a single test so that no other
//! test allocates concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use agentcast_tests::{TestServer, token};
use serde_json::Value;

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CONNECTIONS: usize = 256;
const USERS: usize = 128;
/// Live heap bytes per idle connection, at most.
const BOUND: i64 = 4096;

/// A WebSocket handshake and the welcome, read with blocking I/O; the socket is returned
/// open and never written to again.
fn idle_client(addr: std::net::SocketAddr, user: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let req = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        token(user)
    );
    s.write_all(req.as_bytes()).expect("write handshake");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("read response head");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("welcome header");
    let mut len = usize::from(h[1] & 0x7f);
    if len == 126 {
        let mut l = [0u8; 2];
        s.read_exact(&mut l).expect("welcome length");
        len = usize::from(u16::from_be_bytes(l));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("welcome body");
    let v: Value = serde_json::from_slice(&body).expect("welcome is JSON");
    assert_eq!(v["type"], "welcome", "{v}");
    s
}

async fn open_connections(server: &TestServer) -> u64 {
    let (s, body) = server.http("GET", "/api/v1/stats", None, b"").await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("stats are JSON");
    v["server"]["ws_open"].as_u64().expect("server.ws_open")
}

/// Live bytes once they stop falling (tasks and buffers are freed asynchronously): the
/// smallest of several reads 50 ms apart.
async fn settled_live() -> i64 {
    let mut least = LIVE.load(Ordering::Relaxed);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        least = least.min(LIVE.load(Ordering::Relaxed));
    }
    least
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_costs_the_heap_at_most_4_kib() {
    let server = TestServer::start().await;
    let addr = server.addr;
    // Warm-up: lazily made state (runtimes' buffers, tables' first capacity) is not counted.
    let warm = tokio::task::spawn_blocking(move || {
        (0..16)
            .map(|i| idle_client(addr, &format!("warm-{i}")))
            .collect::<Vec<_>>()
    })
    .await
    .expect("warm-up clients");
    drop(warm);
    for _ in 0..100 {
        if open_connections(&server).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = settled_live().await;
    let clients = tokio::task::spawn_blocking(move || {
        (0..CONNECTIONS)
            .map(|i| idle_client(addr, &format!("idle-{}", i % USERS)))
            .collect::<Vec<_>>()
    })
    .await
    .expect("idle clients");
    assert_eq!(open_connections(&server).await, CONNECTIONS as u64);
    let after = settled_live().await;
    let per_connection = (after - before) / CONNECTIONS as i64;
    println!(
        "live heap: {before} B before, {after} B with {CONNECTIONS} idle connections: \
         {per_connection} B each"
    );
    assert!(
        per_connection <= BOUND,
        "an idle connection holds {per_connection} B of heap (at most {BOUND} expected)"
    );
    drop(clients);
}
