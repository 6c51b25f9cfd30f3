//! HTTP metrics with Distribution's names and labels, so dashboards built for registry:2 keep
//! working: `registry_http_requests_total{handler,code,method}`,
//! `registry_http_request_duration_seconds{handler,method}`,
//! `registry_http_in_flight_requests{handler}`, `registry_http_request_size_bytes{handler}`
//! and `registry_http_response_size_bytes{handler}`. `handler` is registry:2's route name
//! (`base`, `manifest`, `tags`, `blob`, `blob_upload`, `blob_upload_chunk`, `catalog`; Berth
//! adds `referrers`), `method` is lower case as Go's promhttp writes it.
//!
//! Plus Berth's `berth_auth_failures_total{reason}`. Everything registers in the `prometheus`
//! crate's default registry, which the debug server renders.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{
    exponential_buckets, register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
    HistogramVec, IntCounterVec, IntGaugeVec,
};

use crate::endpoint::Endpoint;

/// Distribution's (go-metrics) default duration buckets.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0,
];

struct Http {
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    request_size: HistogramVec,
    response_size: HistogramVec,
}

#[allow(clippy::expect_used)] // Registration only fails on a duplicate name: a programming error.
static HTTP: LazyLock<Http> = LazyLock::new(|| {
    // 1 KiB to 4 GiB, as go-metrics.
    let sizes = exponential_buckets(1024.0, 2.0, 22).expect("valid buckets");
    Http {
        requests: register_int_counter_vec!(
            "registry_http_requests_total",
            "Total number of HTTP requests made.",
            &["handler", "code", "method"]
        )
        .expect("register registry_http_requests_total"),
        duration: register_histogram_vec!(
            "registry_http_request_duration_seconds",
            "The HTTP request latencies in seconds.",
            &["handler", "method"],
            DURATION_BUCKETS.to_vec()
        )
        .expect("register registry_http_request_duration_seconds"),
        in_flight: register_int_gauge_vec!(
            "registry_http_in_flight_requests",
            "The in-flight HTTP requests",
            &["handler"]
        )
        .expect("register registry_http_in_flight_requests"),
        request_size: register_histogram_vec!(
            "registry_http_request_size_bytes",
            "The HTTP request sizes in bytes.",
            &["handler"],
            sizes.clone()
        )
        .expect("register registry_http_request_size_bytes"),
        response_size: register_histogram_vec!(
            "registry_http_response_size_bytes",
            "The HTTP response sizes in bytes.",
            &["handler"],
            sizes
        )
        .expect("register registry_http_response_size_bytes"),
    }
});

#[allow(clippy::expect_used)]
static AUTH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "berth_auth_failures_total",
        "Requests refused by authentication or authorization, by reason.",
        &["reason"]
    )
    .expect("register berth_auth_failures_total")
});

/// registry:2's route name for an endpoint.
pub fn handler_label(endpoint: &Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Base => "base",
        Endpoint::Catalog => "catalog",
        Endpoint::Usage => "usage",
        Endpoint::Tags(_) => "tags",
        Endpoint::Manifest(..) => "manifest",
        Endpoint::Blob(..) => "blob",
        Endpoint::UploadStart(_) => "blob_upload",
        Endpoint::Upload(..) => "blob_upload_chunk",
        Endpoint::Referrers(..) => "referrers",
    }
}

/// One request being measured: counted in flight from `start` until `finish` (or drop).
pub struct InFlight {
    handler: &'static str,
    method: String,
    started: Instant,
    request_bytes: u64,
    done: bool,
}

impl InFlight {
    /// Starts measuring a request to `handler`.
    pub fn start(handler: &'static str, method: &http::Method, request_bytes: u64) -> InFlight {
        HTTP.in_flight.with_label_values(&[handler]).inc();
        InFlight {
            handler,
            method: method.as_str().to_ascii_lowercase(),
            started: Instant::now(),
            request_bytes,
            done: false,
        }
    }

    /// Records the outcome. The duration runs until the response head is ready; a streamed
    /// body is counted in `response_bytes` by its `Content-Length`.
    pub fn finish(mut self, status: u16, response_bytes: u64) {
        let h = &*HTTP;
        h.requests
            .with_label_values(&[self.handler, &status.to_string(), &self.method])
            .inc();
        h.duration
            .with_label_values(&[self.handler, &self.method])
            .observe(self.started.elapsed().as_secs_f64());
        h.request_size
            .with_label_values(&[self.handler])
            .observe(self.request_bytes as f64);
        h.response_size
            .with_label_values(&[self.handler])
            .observe(response_bytes as f64);
        h.in_flight.with_label_values(&[self.handler]).dec();
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // A request whose future was dropped (client gone) leaves the in-flight gauge too.
        if !self.done {
            HTTP.in_flight.with_label_values(&[self.handler]).dec();
        }
    }
}

/// Counts a refused request: `reason` is `unauthenticated`, `forbidden` or `rate_limited`.
pub fn auth_failure(reason: &'static str) {
    AUTH_FAILURES.with_label_values(&[reason]).inc();
}
