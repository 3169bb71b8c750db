//! The floor under the server's broadcast cost: what one process pays, in CPU, to write a
//! small message to each of N loopback TCP sockets, with nothing else — no WebSocket, no
//! engine, no async runtime on the sending side. Another process (this binary, re-executed)
//! connects the sockets and reads everything.
//!
//! ```sh
//! cargo run --release -p agentcast-benches --example loopback_floor -- 15000 300 100 300
//! #                                                  connections rounds interval_ms bytes
//! ```
//!
//! Prints the sender's CPU per write (from `/proc/self/stat`, which includes the receiving
//! socket's softirq processing that loopback runs on the sender's core) and the reader's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// (user, system) CPU seconds of this process.
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("procfs");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the comm; 100 ticks/s.
    let t = |i: usize| f[i].parse::<f64>().expect("ticks") / 100.0;
    (t(11), t(12))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("read") {
        return reader(
            &args[2],
            args[3].parse().expect("n"),
            args[4].parse().expect("threads"),
        );
    }
    let num = |i: usize, d: u64| args.get(i).map_or(d, |s| s.parse().expect("number"));
    let (conns, rounds, interval, bytes) = (num(1, 15_000), num(2, 300), num(3, 100), num(4, 300));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["read", &addr, &conns.to_string(), "2"])
        .spawn()
        .expect("spawn reader");
    let mut socks = Vec::with_capacity(conns as usize);
    for _ in 0..conns {
        let (s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        s.set_nonblocking(true).expect("nonblocking");
        socks.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let msg = vec![b'x'; bytes as usize];
    let (u0, s0) = cpu();
    let t0 = Instant::now();
    let mut blocked = 0u64;
    for r in 0..rounds {
        for s in &mut socks {
            match s.write(&msg) {
                Ok(n) if n == msg.len() => {}
                _ => blocked += 1,
            }
        }
        let next = t0 + Duration::from_millis(interval * (r + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let (u1, s1) = cpu();
    let writes = (conns * rounds) as f64;
    println!(
        "sender: {writes} writes of {bytes} B in {:.1} s; CPU user {:.2} s + sys {:.2} s = {:.2} µs per write; {blocked} short or blocked",
        t0.elapsed().as_secs_f64(),
        u1 - u0,
        s1 - s0,
        ((u1 - u0) + (s1 - s0)) * 1e6 / writes
    );
    drop(socks);
    child.wait().expect("reader exits");
}

/// Connects `n` sockets and reads them until EOF with `threads` epoll-free blocking... no:
/// one thread per 1/threads of the sockets, polling with non-blocking reads would spin, so
/// this uses a small tokio-free design: each thread blocks in `read` round-robin is not
/// possible either; instead the reader uses `mio`-free `poll` through std's non-blocking
/// sockets and a short sleep when a whole pass reads nothing.
fn reader(addr: &str, n: usize, threads: usize) {
    let mut socks: Vec<TcpStream> = (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    let per = n.div_ceil(threads);
    let (u0, s0) = cpu();
    let mut total = 0usize;
    std::thread::scope(|scope| {
        let handles: Vec<_> = socks
            .chunks_mut(per)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut buf = [0u8; 65536];
                    let mut open = chunk.len();
                    let mut done = vec![false; chunk.len()];
                    let mut got = 0usize;
                    while open > 0 {
                        let mut any = false;
                        for (i, s) in chunk.iter_mut().enumerate() {
                            if done[i] {
                                continue;
                            }
                            match s.read(&mut buf) {
                                Ok(0) => {
                                    done[i] = true;
                                    open -= 1;
                                }
                                Ok(k) => {
                                    got += k;
                                    any = true;
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(_) => {
                                    done[i] = true;
                                    open -= 1;
                                }
                            }
                        }
                        if !any {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    got
                })
            })
            .collect();
        total = handles.into_iter().map(|h| h.join().expect("reader")).sum();
    });
    let (u1, s1) = cpu();
    println!(
        "reader: {total} bytes; CPU user {:.2} s + sys {:.2} s",
        u1 - u0,
        s1 - s0
    );
}
