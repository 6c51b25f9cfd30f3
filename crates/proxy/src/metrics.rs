//! Pull-through cache metrics with Distribution's names (`registry_proxy_requests_total`,
//! `_hits_total`, `_misses_total`, `_pulled_bytes_total` and `_pushed_bytes_total`, each by
//! `type` = `blob` or `manifest`), plus Berth's `berth_proxy_upstream_errors_total{upstream}`
//! and `berth_proxy_stale_serves_total{upstream}` (cached content served because the
//! upstream failed). The cache's size: `berth_proxy_cache_bytes{upstream}` and
//! `berth_proxy_cache_images{upstream}` (set by each expiry/eviction pass) and
//! `berth_proxy_evictions_total{upstream}` (images evicted). They live in the `prometheus`
//! crate's default registry.
//!
//! The same events are also kept per upstream in memory ([`upstream_stats`]) for the web UI's
//! cache page: hits and misses, bytes served from the cache, errors with the last one's text
//! and time, stale serves, evictions and the cache's size.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

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

/// One upstream's cache figures since the process started (sizes: as of the last pass).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamStats {
    /// Requests answered from the cache.
    pub hits: u64,
    /// Requests that needed the upstream.
    pub misses: u64,
    /// Bytes of cached content sent to clients.
    pub served_bytes: u64,
    /// Failed upstream requests.
    pub errors: u64,
    /// The last failure: when, and what (as logged).
    pub last_error: Option<(SystemTime, String)>,
    /// Cached content served because the upstream failed.
    pub stale_serves: u64,
    /// Images evicted.
    pub evictions: u64,
    /// Bytes and images cached, as of the last expiry/eviction pass.
    pub cache: Option<(u64, u64)>,
}

/// The longest error text kept.
const MAX_ERROR_TEXT: usize = 300;

static PER_UPSTREAM: LazyLock<Mutex<BTreeMap<String, UpstreamStats>>> =
    LazyLock::new(Mutex::default);

fn per_upstream(upstream: &str, update: impl FnOnce(&mut UpstreamStats)) {
    let mut all = PER_UPSTREAM.lock().unwrap_or_else(|e| e.into_inner());
    // Upstream names come from the configuration, so the map stays as small as it is.
    match all.get_mut(upstream) {
        Some(stats) => update(stats),
        None => update(all.entry(upstream.to_owned()).or_default()),
    }
}

/// Every upstream's figures, by host.
pub fn upstream_stats() -> BTreeMap<String, UpstreamStats> {
    PER_UPSTREAM
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// A request for cached content arrived.
pub fn request(kind: Kind) {
    METRICS.requests.with_label_values(&[kind.label()]).inc();
}

/// It was answered from `upstream`'s cached content.
pub fn hit(kind: Kind, upstream: &str) {
    METRICS.hits.with_label_values(&[kind.label()]).inc();
    per_upstream(upstream, |s| s.hits += 1);
}

/// It needed `upstream`.
pub fn miss(kind: Kind, upstream: &str) {
    METRICS.misses.with_label_values(&[kind.label()]).inc();
    per_upstream(upstream, |s| s.misses += 1);
}

/// Bytes received from an upstream.
pub fn pulled(kind: Kind, bytes: u64) {
    METRICS
        .pulled_bytes
        .with_label_values(&[kind.label()])
        .inc_by(bytes);
}

/// Bytes of `upstream`'s cached content sent to a client.
pub fn pushed(kind: Kind, bytes: u64, upstream: &str) {
    METRICS
        .pushed_bytes
        .with_label_values(&[kind.label()])
        .inc_by(bytes);
    per_upstream(upstream, |s| s.served_bytes += bytes);
}

/// An upstream request failed with `error`.
pub fn upstream_error(upstream: &str, error: &dyn std::fmt::Display) {
    METRICS.upstream_errors.with_label_values(&[upstream]).inc();
    let mut text = error.to_string();
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    per_upstream(upstream, |s| {
        s.errors += 1;
        s.last_error = Some((SystemTime::now(), text));
    });
}

/// Cached content was served because the upstream failed.
pub fn stale_serve(upstream: &str) {
    METRICS.stale_serves.with_label_values(&[upstream]).inc();
    per_upstream(upstream, |s| s.stale_serves += 1);
}

/// A cached image was evicted.
pub fn evicted(upstream: &str) {
    METRICS.evictions.with_label_values(&[upstream]).inc();
    per_upstream(upstream, |s| s.evictions += 1);
}

/// What an upstream's cached images use after a pass.
pub fn cache_usage(upstream: &str, bytes: u64, images: u64) {
    per_upstream(upstream, |s| s.cache = Some((bytes, images)));
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
