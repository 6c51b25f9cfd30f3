//! The pull-through cache's expiry and eviction pass as a background task (`proxy.cache`,
//! `proxy.ttl`; `berth_proxy::cache` explains what it evicts): one pass every
//! `proxy.cache.interval`, none while read-only mode is on. Each pass logs one line per
//! evicted image and one summary with the cached bytes per upstream; the same numbers are the
//! `berth_proxy_cache_bytes` and `berth_proxy_cache_images` gauges.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_config::{format_size, Config};
use berth_proxy::Proxy;

/// The shortest interval honoured, so a typo cannot spin.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Starts the pass when the proxy has limits to enforce. Warns when nothing frees the space
/// of evicted images (no online garbage collection).
pub fn spawn(config: &Config, proxy: Option<&Arc<Proxy>>, jobs: Arc<crate::cluster::Jobs>) {
    let Some((proxy, policy)) = proxy.and_then(|p| p.cache_policy().map(|c| (p, c))) else {
        return;
    };
    if !config.storage.maintenance.gc.enabled {
        tracing::warn!(
            "the pull-through cache evicts images (proxy.cache, proxy.ttl), but only garbage collection frees their blobs: enable storage.maintenance.gc, or run `berth garbage-collect` regularly"
        );
    }
    let interval = policy.interval.max(MIN_INTERVAL);
    tokio::spawn(run(proxy.clone(), jobs, interval));
}

async fn run(proxy: Arc<Proxy>, jobs: Arc<crate::cluster::Jobs>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        if jobs.may_run("pull-through cache eviction") {
            pass(&proxy).await;
        }
    }
}

/// One pass, logged.
async fn pass(proxy: &Proxy) {
    if proxy.registry().read_only() {
        tracing::debug!("pull-through cache pass skipped: read-only mode is on");
        return;
    }
    let started = Instant::now();
    let report = match proxy.cache_pass().await {
        Ok(report) => report,
        Err(e) => {
            tracing::error!(error = %e, "pull-through cache pass failed");
            return;
        }
    };
    for e in &report.evicted {
        tracing::info!(
            upstream = e.upstream,
            repo = %e.repository,
            digest = %e.root,
            tags = e.tags.join(","),
            reason = %e.reason,
            bytes = e.bytes,
            idle_s = idle_seconds(e.last_pull),
            "cached image evicted"
        );
    }
    for note in &report.notes {
        tracing::info!(note, "pull-through cache pass");
    }
    for u in &report.upstreams {
        tracing::info!(
            upstream = u.upstream,
            images = u.images,
            bytes = u.bytes,
            size = format_size(u.bytes),
            "pull-through cache usage"
        );
    }
    let evicted_bytes: u64 = report.evicted.iter().map(|e| e.bytes).sum();
    let summary = format!(
        "pull-through cache pass done evicted={} evicted_bytes={evicted_bytes} cached_bytes={} millis={}",
        report.evicted.len(),
        report.bytes,
        started.elapsed().as_millis()
    );
    if report.over_limit {
        tracing::warn!(
            cached_bytes = report.bytes,
            "pull-through cache still over its size limit: every image left was pulled within the last refresh period (in use); the next pass tries again"
        );
    }
    tracing::info!("{summary}");
}

/// Seconds since `last_pull` (unix ms).
fn idle_seconds(last_pull: u64) -> u64 {
    berth_proxy::cache::now_ms().saturating_sub(last_pull) / 1000
}
