//! The listening socket and the process's file descriptors: what lets several nodes share
//! one port, and what keeps a node that runs out of descriptors answering.
//!
//! - [`bind`] makes the listener: `SO_REUSEADDR`, `SO_REUSEPORT` when `reuse_port` is set
//!   (several node processes on one host listen on the same address; the kernel spreads new
//!   connections over them by a hash of the 4-tuple), and a listen backlog of
//!   `listen_backlog` (the kernel caps it at `net.core.somaxconn`): a reconnect storm of
//!   thousands of clients queues in the backlog instead of being refused with a reset.
//! - [`raise_open_files_limit`] raises the soft `RLIMIT_NOFILE` to the hard limit at start-up
//!   (each connection is one descriptor; a default soft limit of 1,024 would cap a node at
//!   about a thousand connections) and reports both, for the start-up log.
//! - [`FdReserve`]: when `accept` fails with `EMFILE`/`ENFILE` the pending connection stays
//!   in the backlog, and a loop that only retries would spin on it, while every client in the
//!   queue waits out its own timeout. The reserve is one descriptor held open (`/dev/null`)
//!   for that moment: it is closed, the connection accepted with the freed slot and answered
//!   `503` with `Retry-After`, closed, and the reserve opened again. So a node at its
//!   descriptor limit refuses fast and visibly (`accept_out_of_files` counter, a rate-limited
//!   warning) instead of stalling. The kernel's limits are the bound; nothing here assumes a
//!   particular one.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::config::Config;

/// Binds the listener described by `cfg` (`listen`, `reuse_port`, `listen_backlog`). See
/// the [module docs](self).
pub fn bind(cfg: &Config) -> io::Result<TcpListener> {
    bind_addr(cfg.listen, cfg.reuse_port, cfg.listen_backlog)
}

/// [`bind`] with explicit settings.
pub fn bind_addr(addr: SocketAddr, reuse_port: bool, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    #[cfg(not(unix))]
    if reuse_port {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "reuse_port needs SO_REUSEPORT (Linux, BSD)",
        ));
    }
    socket.bind(addr).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse && !reuse_port {
            io::Error::new(
                e.kind(),
                format!(
                    "{e}: another process listens on {addr}; to run several nodes on one port, \
                     start every one of them with reuse_port = true (--reuse-port)"
                ),
            )
        } else {
            e
        }
    })?;
    socket.listen(backlog.max(1))
}

/// The open-files limits of this process after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the ceiling; raise it with `LimitNOFILE` in systemd or `ulimit -Hn`).
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. See the [module docs](self).
pub fn raise_open_files_limit() -> io::Result<OpenFiles> {
    let (before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if before < hard {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard)?;
    }
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    Ok(OpenFiles { before, soft, hard })
}

/// Whether an `accept` error means the process (or the system) has no descriptor left.
pub fn is_out_of_files(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        // EMFILE (this process) and ENFILE (the system).
        matches!(e.raw_os_error(), Some(24 | 23))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

const OUT_OF_FILES: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 82\r\n\r\n\
{\"error\":\"the server is out of file descriptors; retry on another node or later\"}\n";

/// One descriptor kept for answering `503` when the process has none left. See the
/// [module docs](self).
#[derive(Debug)]
pub struct FdReserve {
    file: Option<File>,
    last_warning: Option<Instant>,
}

impl FdReserve {
    /// Opens the reserve (`/dev/null`). Without one (no `/dev/null`), an exhausted process
    /// only retries its accepts.
    pub fn new() -> FdReserve {
        FdReserve {
            file: File::open("/dev/null").ok(),
            last_warning: None,
        }
    }

    /// Called after `accept` failed with [`is_out_of_files`]: frees the reserve, accepts one
    /// connection and answers it `503`, then takes the reserve back. Returns whether a
    /// connection was answered; `false` means the caller should back off briefly.
    pub async fn answer_one(&mut self, listener: &TcpListener) -> bool {
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(
                "out of file descriptors: new connections get 503; raise the open-files limit \
                 (LimitNOFILE) or add nodes"
            );
        }
        if self.file.take().is_none() {
            self.file = File::open("/dev/null").ok();
            return false;
        }
        // The freed slot takes the first queued connection (it is ready: accept just said
        // so); a bounded wait keeps a spurious error from blocking the loop.
        let answered =
            match tokio::time::timeout(Duration::from_millis(10), listener.accept()).await {
                Ok(Ok((stream, _))) => {
                    refuse(stream).await;
                    true
                }
                _ => false,
            };
        self.file = File::open("/dev/null").ok();
        answered
    }
}

impl Default for FdReserve {
    fn default() -> FdReserve {
        FdReserve::new()
    }
}

/// Writes the `503` without waiting (a new socket's send buffer is empty), reads what the
/// client already sent (so closing does not reset the connection before the client reads the
/// answer), half-closes and closes.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    let _ = stream.try_write(OUT_OF_FILES);
    let mut sink = [0u8; 4096];
    while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
    // A TCP stream's shutdown is the `shutdown(2)` call: it does not wait.
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let text = std::str::from_utf8(OUT_OF_FILES).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len);
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }

    #[tokio::test]
    async fn a_second_listener_on_a_port_needs_reuse_port_on_both() {
        let a = bind_addr("127.0.0.1:0".parse().unwrap(), true, 16).unwrap();
        let addr = a.local_addr().unwrap();
        let b = bind_addr(addr, true, 16).expect("both with reuse_port share the port");
        drop(b);
        let e = bind_addr(addr, false, 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("reuse_port"), "{e}");
    }
}
