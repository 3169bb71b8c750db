//! A TCP proxy in front of a Redis that can *wedge* subscriber connections: while wedged, it
//! keeps every socket open but stops forwarding Redis's bytes to any connection that sent a
//! `SUBSCRIBE` (the silent pub/sub failure of Centrifugo #1189). Command connections keep
//! working. It can also *hold* Redis's answers on command connections (they are forwarded,
//! in order, once released) and *cut* every subscriber connection (both sockets closed), to
//! put a node's link failure in the middle of a command.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// See the [module docs](self).
pub struct WedgeProxy {
    /// Where the proxy listens (127.0.0.1).
    pub port: u16,
    wedged: Arc<AtomicBool>,
    held: Arc<AtomicBool>,
    /// Bumped to cut every subscriber connection open at that moment.
    cut: watch::Sender<u64>,
}

/// What every pipe of a proxy looks at.
#[derive(Clone)]
struct Switches {
    wedged: Arc<AtomicBool>,
    held: Arc<AtomicBool>,
    cut: watch::Receiver<u64>,
}

impl WedgeProxy {
    /// Proxies 127.0.0.1:`port` → 127.0.0.1:`target`.
    pub async fn start(target: u16) -> WedgeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let wedged = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicBool::new(false));
        let cut = watch::channel(0).0;
        let switches = Switches {
            wedged: Arc::clone(&wedged),
            held: Arc::clone(&held),
            cut: cut.subscribe(),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let switches = switches.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    pipe(client, server, switches).await;
                });
            }
        });
        WedgeProxy {
            port,
            wedged,
            held,
            cut,
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Wedges (or releases) every subscriber connection, present and future.
    pub fn wedge(&self, on: bool) {
        self.wedged.store(on, Ordering::SeqCst);
    }

    /// Holds (or releases) Redis's answers on every command connection, present and future:
    /// the commands reach Redis and run; their answers wait in the proxy.
    pub fn hold_commands(&self, on: bool) {
        self.held.store(on, Ordering::SeqCst);
    }

    /// Closes every subscriber connection open now (the node sees its pub/sub connection end).
    pub fn cut_subscribers(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

async fn pipe(client: TcpStream, server: TcpStream, switches: Switches) {
    let Switches {
        wedged,
        held,
        mut cut,
    } = switches;
    cut.mark_unchanged();
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let subscriber = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&subscriber);
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if buf[..n]
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
            {
                s.store(true, Ordering::SeqCst);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = sr.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            changed = cut.changed() => {
                if changed.is_err() || subscriber.load(Ordering::SeqCst) {
                    break;
                }
                continue;
            }
        };
        let is_subscriber = subscriber.load(Ordering::SeqCst);
        if is_subscriber && wedged.load(Ordering::SeqCst) {
            continue; // swallowed: the socket stays open, nothing arrives
        }
        while !is_subscriber && held.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}
