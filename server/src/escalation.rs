//! Escalation of critical events nobody acknowledged in time: an error-level log line, a
//! counter, and an optional webhook.
//!
//! The engine calls [`WebhookEscalation::escalate`] on its escalation thread. That call only
//! logs, counts and `try_send`s into a bounded queue, so it never blocks (and the engine's own
//! queue in front of it is bounded too). A tokio task drains the queue and POSTs each
//! escalation to the webhook as JSON:
//!
//! ```json
//! {"event":"unacked_critical","user_id":"u1","run_id":"run-7","seq":1732445012000001,
//!  "type":"agent_error","published_at":"2026-11-24T10:03:32.000Z","connections":0,
//!  "node":"127.0.0.1:8080"}
//! ```
//!
//! A 2xx answer delivers it. A 5xx, a timeout or a connection error is retried after 200 ms,
//! 400 ms, … up to `webhook_attempts` attempts; a 4xx is not retried (the receiver refused
//! the payload). Outcomes are counted (`escalations`, `webhook_delivered`, `webhook_failed`,
//! `webhook_dropped`). Only `http://` URLs are supported; put a TLS-terminating relay in
//! front of an `https://` receiver.

use std::sync::Arc;
use std::time::Duration;

use agentcast_engine::{Escalation, UnackedCritical};
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::config::EscalationSettings;
use crate::metrics::{ServerMetrics, inc};

/// Where escalations are POSTed: a parsed `http://host:port/path`.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    authority: String,
    uri: Uri,
}

impl WebhookTarget {
    /// Parses and checks a webhook URL.
    pub fn parse(url: &str) -> Result<WebhookTarget, String> {
        let uri: Uri = url.parse().map_err(|e| format!("not a URL ({e}): {url}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "scheme {other}:// is not supported; use http:// (behind a TLS relay if needed)"
                ));
            }
            None => return Err(format!("missing http:// in {url}")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("missing host in {url}"))?;
        let host_port = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:80", authority.as_str()),
        };
        Ok(WebhookTarget {
            authority: host_port,
            uri,
        })
    }
}

/// The server's [`Escalation`] hook. See the [module docs](self).
#[derive(Debug)]
pub struct WebhookEscalation {
    metrics: Arc<ServerMetrics>,
    queue: Option<mpsc::Sender<UnackedCritical>>,
}

impl WebhookEscalation {
    /// The hook, and (with a webhook configured) the task that must be spawned on a tokio
    /// runtime to deliver the POSTs.
    pub fn new(
        settings: &EscalationSettings,
        node: String,
        metrics: Arc<ServerMetrics>,
    ) -> (
        WebhookEscalation,
        Option<impl Future<Output = ()> + Send + 'static>,
    ) {
        let target = settings
            .webhook_url
            .as_deref()
            .and_then(|u| WebhookTarget::parse(u).ok());
        let Some(target) = target else {
            return (
                WebhookEscalation {
                    metrics,
                    queue: None,
                },
                None,
            );
        };
        let (tx, rx) = mpsc::channel(settings.webhook_queue.max(1));
        let task = deliver_all(
            rx,
            target,
            node,
            settings.webhook_attempts.max(1),
            Duration::from_millis(settings.webhook_timeout_ms.max(1)),
            Arc::clone(&metrics),
        );
        (
            WebhookEscalation {
                metrics,
                queue: Some(tx),
            },
            Some(task),
        )
    }
}

impl Escalation for WebhookEscalation {
    fn escalate(&self, e: UnackedCritical) {
        inc(&self.metrics.escalations);
        tracing::error!(
            target: "agentcast::escalation",
            user_id = %e.user,
            run_id = e.run_id.as_deref().unwrap_or(""),
            seq = e.seq,
            event_type = e.kind.as_str(),
            connections = e.connections,
            "critical event not acknowledged within its deadline"
        );
        if let Some(q) = &self.queue
            && q.try_send(e).is_err()
        {
            inc(&self.metrics.webhook_dropped);
            tracing::error!(
                target: "agentcast::escalation",
                "webhook queue full or closed: escalation not posted"
            );
        }
    }
}

async fn deliver_all(
    mut rx: mpsc::Receiver<UnackedCritical>,
    target: WebhookTarget,
    node: String,
    attempts: u32,
    timeout: Duration,
    metrics: Arc<ServerMetrics>,
) {
    while let Some(e) = rx.recv().await {
        let body = payload(&e, &node);
        let mut delay = Duration::from_millis(200);
        let mut delivered = false;
        for attempt in 1..=attempts {
            match tokio::time::timeout(timeout, post(&target, body.clone())).await {
                Ok(Ok(status)) if status.is_success() => {
                    delivered = true;
                    break;
                }
                Ok(Ok(status)) if status.is_client_error() => {
                    tracing::error!(target: "agentcast::escalation", %status, "webhook refused the escalation");
                    break;
                }
                Ok(Ok(status)) => {
                    tracing::warn!(target: "agentcast::escalation", %status, attempt, "webhook failed")
                }
                Ok(Err(err)) => {
                    tracing::warn!(target: "agentcast::escalation", error = %err, attempt, "webhook unreachable")
                }
                Err(_) => {
                    tracing::warn!(target: "agentcast::escalation", attempt, "webhook timed out")
                }
            }
            if attempt < attempts {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        if delivered {
            inc(&metrics.webhook_delivered);
        } else {
            inc(&metrics.webhook_failed);
        }
    }
}

fn payload(e: &UnackedCritical, node: &str) -> Bytes {
    let mut ts = bytes::BytesMut::new();
    agentcast_engine::frame::write_rfc3339_ms(&mut ts, e.published_ms);
    let v = serde_json::json!({
        "event": "unacked_critical",
        "user_id": e.user.as_str(),
        "run_id": e.run_id.as_deref(),
        "seq": e.seq,
        "type": e.kind.as_str(),
        "published_at": String::from_utf8_lossy(&ts),
        "connections": e.connections,
        "node": node,
    });
    Bytes::from(v.to_string())
}

/// One POST on a fresh connection (escalations are rare; no pool needed).
async fn post(target: &WebhookTarget, body: Bytes) -> Result<StatusCode, String> {
    let stream = TcpStream::connect(&target.authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = target
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let req = Request::post(path)
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "agentcast")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_checked() {
        assert!(WebhookTarget::parse("http://127.0.0.1:9000/hook").is_ok());
        assert_eq!(
            WebhookTarget::parse("http://example.com/x")
                .unwrap()
                .authority,
            "example.com:80"
        );
        assert!(
            WebhookTarget::parse("https://example.com/x")
                .unwrap_err()
                .contains("https")
        );
        assert!(WebhookTarget::parse("example.com/x").is_err());
        assert!(WebhookTarget::parse("http://").is_err());
    }
}
