//! The floor under the server's broadcast cost: what one thread pays, in CPU, to write a
//! small message to each of N loopback TCP sockets, with nothing else — no WebSocket, no
//! engine, no async runtime on the sending side. Another process (this binary, re-executed
//! with `read`) connects the sockets and reads everything the way `agentcast bench`'s
//! receivers do: one thread, a current-thread tokio runtime, one task per socket awaiting
//! readiness (epoll) and reading. The measurement is `agentcast_server::bench::floor`, the
//! same code `agentcast bench --scenario broadcast --floor` runs.
//!
//! ```sh
//! cargo run --release -p agentcast-benches --example loopback_floor -- 15000 300 100 300 0
//! #                                 connections rounds interval_ms bytes warmup_rounds
//! ```
//!
//! Prints the sender's CPU per write (its thread's `/proc/thread-self/stat`, which includes
//! the receiving socket's softirq processing that loopback runs on the sender's core) and
//! the reader's CPU over the same measured rounds. Each process holds all N sockets, so N
//! must stay 64 below the open-files limit.

use std::process::ExitCode;
use std::time::Duration;

use agentcast_server::bench::floor::{self, FloorPlan};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("read") {
        let n = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(0);
        return match floor::reader_main(args.get(2).map_or("", String::as_str), n) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loopback_floor reader: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let num = |i: usize, d: u64| -> u64 {
        args.get(i).map_or(d, |s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("argument {i} ({s:?}) is not a number");
                std::process::exit(2)
            })
        })
    };
    let plan = FloorPlan {
        connections: num(1, 15_000) as usize,
        rounds: num(2, 300),
        interval: Duration::from_millis(num(3, 100)),
        write_bytes: num(4, 300) as usize,
        warmup_rounds: num(5, 0),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("loopback_floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = floor::measure(&plan, |addr, n| {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["read", addr, &n.to_string()]);
        cmd
    });
    match report {
        Ok(r) => {
            println!(
                "sender: {} writes of {} B in {:.1} s; CPU user {:.2} s + sys {:.2} s = {:.2} µs per write; {} short or blocked",
                r.writes,
                r.write_bytes,
                r.secs,
                r.sender_user_secs,
                r.sender_sys_secs,
                r.sender_us_per_write,
                r.short_writes
            );
            println!(
                "reader: {} of {} bytes; CPU {} s",
                r.bytes_read,
                r.bytes_written,
                r.reader_cpu_secs
                    .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loopback_floor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
