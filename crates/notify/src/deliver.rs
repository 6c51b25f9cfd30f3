//! Delivery to one endpoint: a task that takes events from the queue in order and POSTs each
//! in its own envelope (as registry:2 does), retrying an event until the endpoint accepts it.
//! Retries follow registry:2's circuit breaker: up to `threshold` attempts in a row, then one
//! attempt per `backoff` until one succeeds. Failures are logged and counted, never surfaced to
//! the request that caused the event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};
use serde::Serialize;

use crate::event::{Envelope, Event, EVENTS_MEDIA_TYPE};
use crate::queue::Queue;

/// registry:2's retry rule for one endpoint.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    backoff: Duration,
    recent: u32,
    last: Option<Instant>,
}

impl Breaker {
    /// Retries at once until `threshold` consecutive failures, then waits `backoff` after each.
    pub fn new(threshold: u32, backoff: Duration) -> Self {
        Breaker {
            threshold,
            backoff,
            recent: 0,
            last: None,
        }
    }

    /// How long to wait before the next attempt (`None`: go ahead now).
    pub fn delay(&self, now: Instant) -> Option<Duration> {
        if self.recent < self.threshold {
            return None;
        }
        let last = self.last?;
        let ready = last + self.backoff;
        (ready > now).then(|| ready - now)
    }

    /// Records a failed attempt at `now`.
    pub fn failure(&mut self, now: Instant) {
        self.recent = self.recent.saturating_add(1);
        self.last = Some(now);
    }

    /// Records a successful attempt: the next failure starts counting from zero.
    pub fn success(&mut self) {
        self.recent = 0;
        self.last = None;
    }

    /// Whether the breaker is open (attempts are spaced by the backoff).
    pub fn is_open(&self) -> bool {
        self.recent >= self.threshold
    }
}

/// How one endpoint is reached.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The client, with the endpoint's timeout.
    pub client: reqwest::Client,
    /// Where events are POSTed.
    pub url: reqwest::Url,
    /// How long one attempt may take (set in the client; kept for logs).
    pub timeout: Duration,
    /// The configured headers (never logged: they may carry credentials).
    pub headers: HeaderMap,
    /// Attempts in a row before backing off.
    pub threshold: u32,
    /// The pause between attempts once backing off.
    pub backoff: Duration,
}

/// Why an attempt failed.
enum Failed {
    Status(StatusCode),
    Error(reqwest::Error),
}

/// Delivers the queue's events to `target` forever (the task is aborted on shutdown).
pub async fn run(queue: Arc<Queue>, target: Destination) {
    let mut breaker = Breaker::new(target.threshold, target.backoff);
    let shown = without_credentials(&target.url);
    loop {
        let event = queue.pop().await;
        let body = envelope(&event);
        loop {
            if let Some(wait) = breaker.delay(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            match attempt(&target, body.clone()).await {
                Ok(status) => {
                    queue.metrics.status(status);
                    queue.metrics.successes.inc();
                    if breaker.is_open() {
                        tracing::info!(
                            endpoint = queue.name,
                            "notification endpoint accepts events again"
                        );
                    }
                    breaker.success();
                    break;
                }
                Err(failed) => {
                    let reason = match failed {
                        Failed::Status(status) => {
                            queue.metrics.status(status);
                            queue.metrics.failures.inc();
                            format!("answered {status}")
                        }
                        Failed::Error(e) => {
                            queue.metrics.errors.inc();
                            e.without_url().to_string()
                        }
                    };
                    let was_open = breaker.is_open();
                    breaker.failure(Instant::now());
                    tracing::warn!(
                        endpoint = queue.name,
                        url = %shown,
                        error = reason,
                        queued = queue.len(),
                        "notification delivery failed; retrying"
                    );
                    if breaker.is_open() && !was_open {
                        tracing::warn!(
                            endpoint = queue.name,
                            backoff = ?target.backoff,
                            "notification endpoint failed {} times in a row; backing off between attempts",
                            target.threshold
                        );
                    }
                }
            }
        }
        queue.metrics.pending.dec();
    }
}

/// `url` without user name and password, for logs.
pub fn without_credentials(url: &reqwest::Url) -> reqwest::Url {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown
}

/// One POST; 2xx and 3xx are accepted, as in registry:2.
async fn attempt(target: &Destination, body: Vec<u8>) -> Result<StatusCode, Failed> {
    let response = target
        .client
        .post(target.url.clone())
        .header(http::header::CONTENT_TYPE, EVENTS_MEDIA_TYPE)
        .headers(target.headers.clone())
        .body(body)
        .send()
        .await
        .map_err(Failed::Error)?;
    let status = response.status();
    drain(response).await;
    if status.is_success() || status.is_redirection() {
        Ok(status)
    } else {
        Err(Failed::Status(status))
    }
}

/// How much of a receiver's answer is read (and discarded) so the connection can be reused; a
/// longer answer is dropped with its connection. Chunks are never kept, so memory stays flat,
/// and an endless answer cannot hold the delivery task.
const DRAIN_LIMIT: usize = 64 * 1024;

async fn drain(mut response: reqwest::Response) {
    let mut drained = 0usize;
    while drained < DRAIN_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => drained += chunk.len(),
            Ok(None) | Err(_) => break,
        }
    }
}

/// The envelope for one event, indented like registry:2's (`json.MarshalIndent` with three
/// spaces).
pub fn envelope(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    let events = [event];
    if let Err(e) = (Envelope { events: &events }).serialize(&mut ser) {
        // Only strings and numbers are serialized; this cannot happen.
        tracing::error!(error = %e, "cannot serialize a notification event");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_at_once_until_the_threshold_then_spaces_attempts_by_the_backoff() {
        let backoff = Duration::from_secs(2);
        let mut b = Breaker::new(3, backoff);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(b.delay(t0), None, "attempt {i} goes ahead");
            b.failure(t0);
        }
        assert!(b.is_open());
        assert_eq!(b.delay(t0), Some(backoff));
        assert_eq!(
            b.delay(t0 + Duration::from_millis(500)),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(b.delay(t0 + backoff), None);
        // Still failing: each further failure waits a whole backoff again.
        let t1 = t0 + backoff;
        b.failure(t1);
        assert_eq!(b.delay(t1), Some(backoff));
        b.success();
        assert!(!b.is_open());
        assert_eq!(b.delay(t1), None);
        b.failure(t1);
        assert_eq!(b.delay(t1), None, "a success resets the count");
    }

    #[test]
    fn a_zero_threshold_backs_off_after_every_failure() {
        let mut b = Breaker::new(0, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(b.delay(t0), None);
        b.failure(t0);
        assert_eq!(b.delay(t0), Some(Duration::from_secs(1)));
    }
}
