//! The tokens scenario's receivers: WebSocket connections that rebuild their run's text.
//!
//! A receiver reads every frame, keeps those of its run's message and appends each
//! `message_delta`'s `data.delta` (a merged frame's delta is the concatenation of the deltas
//! it covers) until `message_completed`. Frames are decoded into a borrowed struct, not a
//! `serde_json::Value`: at 100,000 frames a second the bench's own parsing is a large part of
//! the machine's two cores.
//!
//! A *stalled* receiver connects with a tiny receive buffer and reads nothing until every
//! publisher is done, so the server's ring for it fills during the run and its deltas merge;
//! it then reads everything and is checked like the others (its latencies are not sampled:
//! it is late on purpose).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context as _, anyhow};
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::super::client::unix_nanos;
use super::{Shared, TOKEN_CHARS};

/// The receive buffer a stalled receiver asks for, bytes (Linux doubles it).
const STALLED_RCVBUF: u32 = 4096;

/// What one receiver saw.
#[derive(Debug, Default)]
pub(super) struct Received {
    pub(super) text: String,
    pub(super) completed: bool,
    pub(super) merged_frames: u64,
    pub(super) merged_tokens: u64,
    pub(super) latencies_ns: Vec<u64>,
    pub(super) disconnected: bool,
    pub(super) stalled: bool,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default)]
    seq_from: Option<u64>,
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(default, borrow)]
    message_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<Cow<'a, str>>,
}

/// Opens one receiver's WebSocket (a stalled one with a tiny receive buffer).
pub(super) async fn connect(
    addr: SocketAddr,
    host: &str,
    token: &str,
    stalled: bool,
) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let tcp = if stalled {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        socket.set_recv_buffer_size(STALLED_RCVBUF)?;
        socket.connect(addr).await
    } else {
        TcpStream::connect(addr).await
    }
    .with_context(|| format!("connect {addr}"))?;
    let url = format!("ws://{host}/ws?token={token}");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .map_err(|e| anyhow!("WebSocket upgrade: {e}"))?;
    Ok(ws)
}

/// Reads run `r`'s message to `message_completed` (or the connection's end). A stalled
/// receiver first waits for `published` to turn true.
pub(super) async fn receive(
    mut ws: WebSocketStream<TcpStream>,
    r: usize,
    message: String,
    shared: Arc<Shared>,
    stall: Option<watch::Receiver<bool>>,
) -> Received {
    let mut got = Received {
        stalled: stall.is_some(),
        ..Received::default()
    };
    if let Some(mut published) = stall {
        let _ = published.wait_for(|done| *done).await;
    }
    loop {
        let Some(Ok(msg)) = ws.next().await else {
            got.disconnected = true;
            break;
        };
        let Message::Text(t) = msg else { continue };
        let now = unix_nanos();
        let Ok(f) = serde_json::from_str::<Frame<'_>>(&t) else {
            continue;
        };
        let Some(data) = f.data else { continue };
        if data.message_id.as_deref() != Some(message.as_str()) {
            continue;
        }
        match &*f.ty {
            "message_delta" => {
                let Some(d) = data.delta else { continue };
                let first = got.text.len() / TOKEN_CHARS;
                got.text.push_str(&d);
                let end = got.text.len() / TOKEN_CHARS;
                if f.seq_from.is_some() {
                    got.merged_frames += 1;
                    got.merged_tokens += (end - first) as u64;
                }
                if got.stalled {
                    continue;
                }
                for k in first..end {
                    let at = shared.sent_at[r]
                        .get(k)
                        .map_or(0, |a| a.load(Ordering::Relaxed));
                    if at > 0 {
                        got.latencies_ns.push(now.saturating_sub(at));
                    }
                }
            }
            "message_completed" => {
                got.completed = true;
                break;
            }
            _ => {}
        }
    }
    got
}
