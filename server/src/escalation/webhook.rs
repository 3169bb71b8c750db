//! Delivery of escalations to the webhook: concurrent, bounded, each attempt timed out.
//!
//! One task takes escalations from the bounded queue, but only while fewer than
//! `webhook_concurrency` POSTs are in flight (a [`Semaphore`] permit per POST); each POST runs
//! in its own task. So a webhook that hangs holds at most `webhook_concurrency` requests
//! (each released by its timeout), the queue fills behind them, and escalations beyond it are
//! dropped and counted: delivery to clients never waits on the webhook.
//!
//! A 2xx answer delivers the escalation. A 5xx, a timeout or a connection error is retried
//! after 200 ms, 400 ms, … up to `webhook_attempts` attempts; a 4xx is not retried (the
//! receiver refused the payload). Outcomes are counted (`webhook_delivered`, `webhook_failed`,
//! gauge `webhook_in_flight`); failures are logged at warn level at most once per log
//! interval, with the number held back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentcast_engine::UnackedCritical;
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use super::log::Throttle;
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

/// Everything one POST needs, shared by the delivery tasks.
#[derive(Debug)]
pub(crate) struct Webhook {
    pub(crate) target: WebhookTarget,
    pub(crate) node: String,
    pub(crate) attempts: u32,
    pub(crate) timeout: Duration,
    pub(crate) metrics: Arc<ServerMetrics>,
    pub(crate) failures: Throttle,
}

/// Takes escalations from `rx` while a permit of `concurrency` is free, and POSTs each in its
/// own task. Ends when the queue's sender is gone and every POST finished.
pub(crate) async fn deliver_all(
    mut rx: mpsc::Receiver<UnackedCritical>,
    hook: Arc<Webhook>,
    concurrency: usize,
) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    loop {
        // The permit first: while every POST is in flight, escalations wait in the queue
        // (and beyond its capacity are dropped by the sender), never in this task.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let Some(e) = rx.recv().await else {
            return;
        };
        let hook = Arc::clone(&hook);
        hook.metrics
            .webhook_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            hook.deliver(&e).await;
            hook.metrics
                .webhook_in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(permit);
        });
    }
}

impl Webhook {
    /// Every attempt for one escalation; counts the outcome.
    async fn deliver(&self, e: &UnackedCritical) {
        let body = payload(e, &self.node);
        let mut delay = Duration::from_millis(200);
        let mut failure = String::new();
        for attempt in 1..=self.attempts {
            match tokio::time::timeout(self.timeout, post(&self.target, body.clone())).await {
                Ok(Ok(status)) if status.is_success() => {
                    inc(&self.metrics.webhook_delivered);
                    return;
                }
                Ok(Ok(status)) if status.is_client_error() => {
                    failure = format!("refused with {status} (not retried)");
                    break;
                }
                Ok(Ok(status)) => failure = format!("answered {status}"),
                Ok(Err(err)) => failure = format!("unreachable: {err}"),
                Err(_) => failure = format!("timed out after {} ms", self.timeout.as_millis()),
            }
            tracing::debug!(target: "agentcast::escalation", attempt, %failure, "webhook attempt failed");
            if attempt < self.attempts {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        inc(&self.metrics.webhook_failed);
        if let Some(held_back) = self.failures.allow(Instant::now()) {
            tracing::warn!(
                target: "agentcast::escalation",
                user_id = %e.user,
                seq = e.seq,
                held_back,
                "escalation webhook failed: {failure} (after {} attempts); {held_back} more \
                 failures since the last such line; all are counted in \
                 agentcast_webhook_failed_total",
                self.attempts
            );
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
        "ever_connected": e.ever_connected,
        "node": node,
    });
    Bytes::from(v.to_string())
}

/// One POST on a fresh connection (no pool: at most `webhook_concurrency` at once).
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
