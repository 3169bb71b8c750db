//! The client side of the WebSocket upgrade (RFC 6455 §4.1): connect (bound to the group's
//! source address), send the `GET /ws?token=…[&last_seq=N]` request, read the response head,
//! check `101` and `Sec-WebSocket-Accept`. Bytes the server sent past the head (the first
//! frames) are handed back to the caller.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use super::{ReceiverPlan, user_name};
use crate::auth::Authenticator;
use crate::tier::Tier;

/// Connects (bound to the source address, if any), upgrades, and returns the stream and the
/// bytes read past the response head.
pub(super) async fn handshake(
    plan: &ReceiverPlan,
    auth: &Authenticator,
    user: usize,
    last_seq: Option<u64>,
) -> Result<(TcpStream, Vec<u8>), String> {
    let sock = match plan.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = plan.source_ip {
        sock.bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let mut stream = sock
        .connect(plan.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", plan.addr))?;
    let token = auth
        .mint(&user_name(plan.run, user), Tier::Enterprise, 24 * 3600, &[])
        .map_err(|e| e.to_string())?;
    let key = B64.encode(rand::random::<[u8; 16]>());
    let resume = last_seq.map_or(String::new(), |s| format!("&last_seq={s}"));
    let request = format!(
        "GET /ws?token={token}{resume} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        plan.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending the upgrade: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    let end = loop {
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("reading the upgrade response: {e}"))?;
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if n == 0 || buf.len() > 16 * 1024 {
            return Err(format!(
                "bad upgrade response: {}",
                String::from_utf8_lossy(&buf[..buf.len().min(200)])
            ));
        }
    };
    check_upgrade(&buf[..end], &key)?;
    buf.drain(..end);
    Ok((stream, buf))
}

/// Checks a `101` response head and its `Sec-WebSocket-Accept`.
pub(super) fn check_upgrade(head: &[u8], key: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(head);
    let status = text.split(' ').nth(1).unwrap_or("");
    if status != "101" {
        return Err(format!(
            "upgrade refused: {}",
            text.lines().next().unwrap_or("")
        ));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-accept")
            .then(|| value.trim().to_owned())
    });
    if accept.as_deref() != Some(expected.as_str()) {
        return Err("wrong or missing Sec-WebSocket-Accept".into());
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_responses_are_checked() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check_upgrade(ok, key), Ok(()));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(check_upgrade(wrong, key).is_err());
        let refused = b"HTTP/1.1 401 Unauthorized\r\n\r\n{\"error\":\"token expired\"}";
        assert!(check_upgrade(refused, key).unwrap_err().contains("401"));
    }
}
