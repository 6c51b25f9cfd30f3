//! Delivery metrics under registry:2's Prometheus names, registered in the process-wide default
//! registry (served on `/metrics` with everything else):
//!
//! - `registry_notifications_events_total{type, endpoint}`: `type` is `Events` (accepted into
//!   the queue), `Successes` (delivered), `Failures` (answered with a status other than 2xx/3xx,
//!   counted per attempt), `Errors` (no answer: refused, timed out; per attempt), as in
//!   registry:2, plus Berth's `Dropped` (refused because the queue was full);
//! - `registry_notifications_pending_total{endpoint}`: events queued or being delivered;
//! - `registry_notifications_status_total{code, endpoint}`: answers per status, `code` written
//!   like registry:2 (`"200 OK"`, `"500 Internal Server Error"`).

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let opts = Opts::new("events_total", "The number of total events");
    register(IntCounterVec::new(named(opts), &["type", "endpoint"]))
});

static PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    let opts = Opts::new("pending_total", "The gauge of pending events in queue");
    register(IntGaugeVec::new(named(opts), &["endpoint"]))
});

static STATUS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let opts = Opts::new("status_total", "The number of status code");
    register(IntCounterVec::new(named(opts), &["code", "endpoint"]))
});

fn named(opts: Opts) -> Opts {
    opts.namespace("registry").subsystem("notifications")
}

/// Registers a collector in the default registry; a collector that cannot be registered (the
/// name taken by someone else) still counts, it is just not exported.
fn register<C>(made: prometheus::Result<C>) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    // The options above are static and valid, so `new` cannot fail.
    let collector = made.expect("static metric options are valid");
    if let Err(e) = prometheus::default_registry().register(Box::new(collector.clone())) {
        tracing::warn!(error = %e, "notification metrics are not exported");
    }
    collector
}

/// The counters of one endpoint, resolved once so counting costs no label lookups.
#[derive(Debug, Clone)]
pub struct EndpointMetrics {
    name: String,
    /// Events accepted into the queue (`type="Events"`).
    pub events: IntCounter,
    /// Events delivered (`type="Successes"`).
    pub successes: IntCounter,
    /// Attempts answered with an unaccepted status (`type="Failures"`).
    pub failures: IntCounter,
    /// Attempts without an answer (`type="Errors"`).
    pub errors: IntCounter,
    /// Events refused because the queue was full (`type="Dropped"`, Berth's addition).
    pub dropped: IntCounter,
    /// Events queued or in delivery.
    pub pending: IntGauge,
}

impl EndpointMetrics {
    /// The metrics of the endpoint called `name`.
    pub fn new(name: &str) -> Self {
        let events = |kind: &str| EVENTS.with_label_values(&[kind, name]);
        EndpointMetrics {
            name: name.to_owned(),
            events: events("Events"),
            successes: events("Successes"),
            failures: events("Failures"),
            errors: events("Errors"),
            dropped: events("Dropped"),
            pending: PENDING.with_label_values(&[name]),
        }
    }

    /// Counts an answer with `status`.
    pub fn status(&self, status: http::StatusCode) {
        let code = format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        STATUS.with_label_values(&[code.as_str(), &self.name]).inc();
    }
}
