//! Pull-through cache metrics with Distribution's names (`registry_proxy_requests_total`,
//! `_hits_total`, `_misses_total`, `_pulled_bytes_total` and `_pushed_bytes_total`, each by
//! `type` = `blob` or `manifest`), plus Berth's `berth_proxy_upstream_errors_total{upstream}`
//! and `berth_proxy_stale_serves_total{upstream}` (cached content served because the
//! upstream failed). The cache's size: `berth_proxy_cache_bytes{upstream}` and
//! `berth_proxy_cache_images{upstream}` (set by each expiry/eviction pass) and
//! `berth_proxy_evictions_total{upstream}` (images evicted). They live in the `prometheus`
//! crate's default registry.

use std::sync::LazyLock;

use prometheus::{register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec};

/// What a proxied request asked for.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A blob (layer or config).
    Blob,
    /// A manifest or index.
    Manifest,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Blob => "blob",
            Kind::Manifest => "manifest",
        }
    }
}

struct ProxyMetrics {
    requests: IntCounterVec,
    hits: IntCounterVec,
    misses: IntCounterVec,
    pulled_bytes: IntCounterVec,
    pushed_bytes: IntCounterVec,
    upstream_errors: IntCounterVec,
    stale_serves: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_images: IntGaugeVec,
    evictions: IntCounterVec,
}

#[allow(clippy::expect_used)] // Registration only fails on a duplicate name: a programming error.
static METRICS: LazyLock<ProxyMetrics> = LazyLock::new(|| {
    let counter = |name: &str, help: &str, label: &str| {
        register_int_counter_vec!(name, help, &[label]).expect("register proxy counter")
    };
    let gauge = |name: &str, help: &str| {
        register_int_gauge_vec!(name, help, &["upstream"]).expect("register proxy gauge")
    };
    ProxyMetrics {
        requests: counter(
            "registry_proxy_requests_total",
            "The number of total incoming proxy request received",
            "type",
        ),
        hits: counter(
            "registry_proxy_hits_total",
            "The number of total proxy request hits",
            "type",
        ),
        misses: counter(
            "registry_proxy_misses_total",
            "The number of total proxy request misses",
            "type",
        ),
        pulled_bytes: counter(
            "registry_proxy_pulled_bytes_total",
            "The size of total bytes pulled from the upstream",
            "type",
        ),
        pushed_bytes: counter(
            "registry_proxy_pushed_bytes_total",
            "The size of total bytes pushed to the client",
            "type",
        ),
        upstream_errors: counter(
            "berth_proxy_upstream_errors_total",
            "Upstream requests that failed (refused, timed out, 401/403/429/5xx, invalid).",
            "upstream",
        ),
        stale_serves: counter(
            "berth_proxy_stale_serves_total",
            "Cached content served because the upstream failed (stale-if-error).",
            "upstream",
        ),
        cache_bytes: gauge(
            "berth_proxy_cache_bytes",
            "Bytes the cached images of an upstream use (each blob once), after the latest cache pass.",
        ),
        cache_images: gauge(
            "berth_proxy_cache_images",
            "Cached images of an upstream, after the latest cache pass.",
        ),
        evictions: counter(
            "berth_proxy_evictions_total",
            "Cached images evicted (expired, or least recently pulled beyond the size limit).",
            "upstream",
        ),
    }
});

/// A request for cached content arrived.
pub fn request(kind: Kind) {
    METRICS.requests.with_label_values(&[kind.label()]).inc();
}

/// It was answered from the cache.
pub fn hit(kind: Kind) {
    METRICS.hits.with_label_values(&[kind.label()]).inc();
}

/// It needed the upstream.
pub fn miss(kind: Kind) {
    METRICS.misses.with_label_values(&[kind.label()]).inc();
}

/// Bytes received from an upstream.
pub fn pulled(kind: Kind, bytes: u64) {
    METRICS
        .pulled_bytes
        .with_label_values(&[kind.label()])
        .inc_by(bytes);
}

/// Bytes of cached content sent to a client.
pub fn pushed(kind: Kind, bytes: u64) {
    METRICS
        .pushed_bytes
        .with_label_values(&[kind.label()])
        .inc_by(bytes);
}

/// An upstream request failed.
pub fn upstream_error(upstream: &str) {
    METRICS.upstream_errors.with_label_values(&[upstream]).inc();
}

/// Cached content was served because the upstream failed.
pub fn stale_serve(upstream: &str) {
    METRICS.stale_serves.with_label_values(&[upstream]).inc();
}

/// A cached image was evicted.
pub fn evicted(upstream: &str) {
    METRICS.evictions.with_label_values(&[upstream]).inc();
}

/// What an upstream's cached images use after a pass.
pub fn cache_usage(upstream: &str, bytes: u64, images: u64) {
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    METRICS
        .cache_bytes
        .with_label_values(&[upstream])
        .set(gauge(bytes));
    METRICS
        .cache_images
        .with_label_values(&[upstream])
        .set(gauge(images));
}
