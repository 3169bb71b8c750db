//! A TCP proxy in front of a Redis that can *wedge* subscriber connections: while wedged, it
//! keeps every socket open but stops forwarding Redis's bytes to any connection that sent a
//! `SUBSCRIBE` (the silent pub/sub failure of Centrifugo #1189). Command connections keep
//! working.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// See the [module docs](self).
pub struct WedgeProxy {
    /// Where the proxy listens (127.0.0.1).
    pub port: u16,
    wedged: Arc<AtomicBool>,
}

impl WedgeProxy {
    /// Proxies 127.0.0.1:`port` → 127.0.0.1:`target`.
    pub async fn start(target: u16) -> WedgeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let wedged = Arc::new(AtomicBool::new(false));
        let w = Arc::clone(&wedged);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let w = Arc::clone(&w);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    pipe(client, server, w).await;
                });
            }
        });
        WedgeProxy { port, wedged }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Wedges (or releases) every subscriber connection, present and future.
    pub fn wedge(&self, on: bool) {
        self.wedged.store(on, Ordering::SeqCst);
    }
}

async fn pipe(client: TcpStream, server: TcpStream, wedged: Arc<AtomicBool>) {
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
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if subscriber.load(Ordering::SeqCst) && wedged.load(Ordering::SeqCst) {
            continue; // swallowed: the socket stays open, nothing arrives
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}
