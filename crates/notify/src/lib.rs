//! registry:2 notifications: the registry tells webhook endpoints what was pushed, pulled,
//! mounted and deleted, in registry:2's event envelope
//! (`application/vnd.docker.distribution.events.v1+json`), so receivers written for registry:2
//! work unchanged.
//!
//! The request path only calls [`Notifier::emit`], which builds the event once and pushes it
//! into each endpoint's bounded queue ([`QUEUE_BOUND`]) under a short lock: it never waits for
//! the network, so a receiver that is down or slow never slows a push. One task per endpoint
//! delivers the queue in order and retries an event until the endpoint accepts it
//! (registry:2's circuit breaker: `threshold` attempts in a row, then one per `backoff`). Failures are logged (without
//! header values, which may hold credentials) and counted under registry:2's metric names.

mod deliver;
mod event;
mod metrics;
mod queue;
mod timestamp;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_config::{EndpointConfig, NotificationsConfig};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::task::JoinHandle;

pub use event::{
    references, Action, ActorRecord, Descriptor, Envelope, Event, RequestRecord, SourceRecord,
    Target, BLOB_MEDIA_TYPE, EVENTS_MEDIA_TYPE,
};
pub use queue::QUEUE_BOUND;
pub use timestamp::format_timestamp;

use crate::queue::{Filter, Queue};

/// registry:2's defaults for an endpoint's `timeout`, `threshold` and `backoff` when they are
/// unset or zero.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// See [`DEFAULT_TIMEOUT`].
pub const DEFAULT_THRESHOLD: u32 = 10;
/// See [`DEFAULT_TIMEOUT`].
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// An in-process receiver of every event, called by [`Notifier::emit`] on the request path
/// (the scan hook of `berth serve`): it must only hand the event on, never wait.
#[derive(Clone)]
pub struct Listener(pub Arc<dyn Fn(&Event) + Send + Sync>);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listener")
    }
}

/// An endpoint that cannot be used as configured.
#[derive(Debug, thiserror::Error)]
#[error("notifications.endpoints[{index}] ({name}): {message}")]
pub struct NotifyError {
    /// Its position in `notifications.endpoints`.
    pub index: usize,
    /// Its `name`.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// The handle the API emits events through; cheap to clone. Dropping the last clone stops the
/// delivery tasks (events still queued are lost: the queues live in memory, as in registry:2).
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queues: Vec<Arc<Queue>>,
    tasks: Vec<JoinHandle<()>>,
    source: SourceRecord,
    include_references: bool,
    listeners: Vec<Listener>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Notifier {
    /// Starts one delivery task per enabled endpoint of `config`; `None` when there is none,
    /// so a registry without notifications does no work per request. Must be called inside a
    /// Tokio runtime.
    pub fn start(
        config: &NotificationsConfig,
        source: SourceRecord,
    ) -> Result<Option<Notifier>, NotifyError> {
        Notifier::start_bounded(config, source, QUEUE_BOUND)
    }

    /// [`Notifier::start`] for the endpoints of `config` (if any) plus in-process `listeners`;
    /// `None` when there is neither.
    pub fn start_with(
        config: Option<&NotificationsConfig>,
        source: SourceRecord,
        listeners: Vec<Listener>,
    ) -> Result<Option<Notifier>, NotifyError> {
        let endpoints = match config {
            Some(c) => Notifier::start(c, source.clone())?,
            None => None,
        };
        if listeners.is_empty() {
            return Ok(endpoints);
        }
        let (queues, tasks, include_references) = match endpoints {
            Some(n) => match Arc::try_unwrap(n.inner) {
                Ok(mut inner) => (
                    std::mem::take(&mut inner.queues),
                    std::mem::take(&mut inner.tasks),
                    inner.include_references,
                ),
                // Just built, so never shared yet.
                Err(_) => (Vec::new(), Vec::new(), false),
            },
            None => (Vec::new(), Vec::new(), false),
        };
        Ok(Some(Notifier {
            inner: Arc::new(Inner {
                queues,
                tasks,
                source,
                include_references,
                listeners,
            }),
        }))
    }

    /// Like [`Notifier::start`] with another queue bound (tests).
    pub fn start_bounded(
        config: &NotificationsConfig,
        source: SourceRecord,
        bound: usize,
    ) -> Result<Option<Notifier>, NotifyError> {
        let mut destinations = Vec::new();
        for (index, endpoint) in config.endpoints.iter().enumerate() {
            if endpoint.disabled {
                tracing::info!(
                    endpoint = endpoint.name,
                    "notification endpoint disabled, skipping"
                );
                continue;
            }
            let destination = destination(endpoint).map_err(|message| NotifyError {
                index,
                name: endpoint.name.clone(),
                message,
            })?;
            destinations.push((endpoint, destination));
        }
        if destinations.is_empty() {
            return Ok(None);
        }
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for (endpoint, destination) in destinations {
            let media_types = endpoint
                .ignoredmediatypes
                .iter()
                .chain(&endpoint.ignore.mediatypes);
            let filter = Filter::new(media_types, &endpoint.ignore.actions);
            let queue = Arc::new(Queue::new(&endpoint.name, filter, bound));
            tracing::info!(
                endpoint = endpoint.name,
                url = %deliver::without_credentials(&destination.url),
                timeout = ?destination.timeout,
                threshold = destination.threshold,
                backoff = ?destination.backoff,
                headers = ?endpoint.headers.keys().collect::<Vec<_>>(),
                "sending notifications"
            );
            tasks.push(tokio::spawn(deliver::run(queue.clone(), destination)));
            queues.push(queue);
        }
        Ok(Some(Notifier {
            inner: Arc::new(Inner {
                queues,
                tasks,
                source,
                include_references: config.events.includereferences,
                listeners: Vec::new(),
            }),
        }))
    }

    /// Whether manifest events carry the manifest's references
    /// (`notifications.events.includereferences`).
    pub fn include_references(&self) -> bool {
        self.inner.include_references
    }

    /// Queues an event for every endpoint that does not ignore it. Never waits.
    pub fn emit(
        &self,
        action: Action,
        target: Target,
        request: &RequestRecord,
        actor: &ActorRecord,
    ) {
        let event = Arc::new(Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: SystemTime::now(),
            action,
            target,
            request: request.clone(),
            actor: actor.clone(),
            source: self.inner.source.clone(),
        });
        for queue in &self.inner.queues {
            queue.push(&event);
        }
        for listener in &self.inner.listeners {
            (listener.0)(&event);
        }
    }
}

/// How to reach `endpoint`, with registry:2's defaults for zero values.
fn destination(endpoint: &EndpointConfig) -> Result<deliver::Destination, String> {
    let url = reqwest::Url::parse(&endpoint.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| format!("url {:?} is not an http:// or https:// URL", endpoint.url))?;
    let mut headers = HeaderMap::new();
    for (name, values) in &endpoint.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers: invalid header name {name:?}"))?;
        for value in values {
            // The value is not repeated in the message: it may be a credential.
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("headers.{name}: invalid header value"))?;
            headers.append(header.clone(), value);
        }
    }
    let or = |d: Duration, default| if d.is_zero() { default } else { d };
    let timeout = or(endpoint.timeout, DEFAULT_TIMEOUT);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    Ok(deliver::Destination {
        client,
        url,
        headers,
        timeout,
        threshold: match endpoint.threshold {
            0 => DEFAULT_THRESHOLD,
            n => n,
        },
        backoff: or(endpoint.backoff, DEFAULT_BACKOFF),
    })
}

/// This instance as events name it: `hostname:port` (the port of `http_addr`, as registry:2
/// takes it from `http.addr`) and a random id that changes at every start.
pub fn source_record(http_addr: &str) -> SourceRecord {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    let addr = match (hostname, http_addr.rsplit_once(':')) {
        (Some(host), Some((_, port))) => format!("{host}:{port}"),
        _ => http_addr.to_owned(),
    };
    SourceRecord {
        addr,
        instance_id: uuid::Uuid::new_v4().to_string(),
    }
}
