//! What the load generator reads from Linux `/proc`: CPU time, run-queue wait and resident
//! memory of a process, a thread's CPU time, the pid listening on a TCP port, the open-files
//! limit and the load average.
//!
//! Every reader returns `None` when the file is missing or unexpected (another OS, a
//! process that exited), so the report shows "n/a" rather than failing the run.

use std::path::Path;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every mainstream
/// Linux architecture; `sysconf(_SC_CLK_TCK)` would need libc for the same answer).
const USER_HZ: f64 = 100.0;

/// User + system CPU time of process `pid` (all its threads), in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&stat)
}

/// `utime + stime` from the text of `/proc/<pid>/stat`, in seconds. The command name (field
/// 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    parse_stat_user_sys(stat).map(|(u, s)| u + s)
}

/// `(utime, stime)` from the text of a `stat` file, in seconds.
fn parse_stat_user_sys(stat: &str) -> Option<(f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After `)`: state is field 3, utime field 14, stime field 15.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime as f64 / USER_HZ, stime as f64 / USER_HZ))
}

/// User and system CPU time of the calling thread (`/proc/thread-self/stat`), in seconds.
pub fn thread_user_sys_secs() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    parse_stat_user_sys(&stat)
}

/// Time the threads of process `pid` spent runnable but waiting for a CPU, in seconds: the
/// second field of `/proc/<pid>/task/*/schedstat`, summed (threads that exited are not
/// counted). On an oversubscribed machine this is where latency goes.
pub fn run_queue_wait_secs(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns: u64 = 0;
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("schedstat")) else {
            continue;
        };
        ns += parse_schedstat_wait(&stat)?;
    }
    Some(ns as f64 / 1e9)
}

/// The run-queue wait (ns) of a `schedstat` line: `cpu_ns wait_ns timeslices`.
fn parse_schedstat_wait(s: &str) -> Option<u64> {
    s.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Resident set size of process `pid`, KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The soft limit on open files of this process (`Max open files` of `/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l["Max open files".len()..].split_ascii_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` writes them.
pub fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        s.split_ascii_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The pid of the process holding a socket that listens on TCP `port` (IPv4 or IPv6), found
/// through `/proc/net/tcp{,6}` (the socket's inode) and `/proc/*/fd` (who holds it). Only
/// processes this user may inspect are seen.
pub fn listening_pid(port: u16) -> Option<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| listening_inodes(&t, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if holds_any(&entry.path().join("fd"), &targets) {
            return Some(pid);
        }
    }
    None
}

fn holds_any(fd_dir: &Path, targets: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(fd_dir) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|l| l.to_str().map(|s| targets.iter().any(|t| t == s)))
            .unwrap_or(false)
    })
}

/// Inodes of the sockets listening (state `0A`) on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let want = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let local_port = f.get(1)?.rsplit(':').next()?;
            (local_port == want && *f.get(3)? == "0A" && *f.get(9)? != "0").then(|| f[9].to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_fields_after_the_command_name() {
        let stat = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 1000 200";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        assert_eq!(parse_stat_cpu("garbage"), None);
        assert_eq!(
            parse_schedstat_wait("154270103 221982521 572\n"),
            Some(221_982_521)
        );
        assert_eq!(parse_schedstat_wait("1"), None);
    }

    #[test]
    fn listening_sockets_are_found_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 55555 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 66666 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(listening_inodes(table, 8080), vec!["55555".to_owned()]);
        assert!(listening_inodes(table, 8081).is_empty());
    }

    #[test]
    fn this_process_is_readable() {
        if !Path::new("/proc/self/stat").exists() {
            return; // not Linux
        }
        let me = std::process::id();
        assert!(cpu_secs(me).is_some());
        let (user, sys) = thread_user_sys_secs().unwrap();
        assert!(user >= 0.0 && sys >= 0.0);
        assert!(run_queue_wait_secs(me).is_some());
        assert!(rss_kib(me).unwrap() > 0);
        assert!(open_files_limit().unwrap() > 0);
    }
}
