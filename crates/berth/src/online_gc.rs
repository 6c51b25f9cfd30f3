//! `storage.maintenance.gc` (Berth extension): the online garbage collector as a background
//! task. Each run marks, purges old trash entries and moves unused blobs to the trash while
//! the registry keeps serving (`berth_registry::gc` explains why that is safe); it never runs
//! while read-only mode is on. The disk watermark can wake it early (see `watermark.rs`).
//!
//! Metrics: `berth_gc_runs_total{result}` (`ok`, `failed`, `skipped`),
//! `berth_gc_bytes_freed_total`, `berth_gc_blobs_trashed_total`, `berth_gc_blobs_deleted_total`
//! and `berth_gc_last_run_seconds`.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use prometheus::{
    register_gauge, register_int_counter, register_int_counter_vec, Gauge, IntCounter,
    IntCounterVec,
};
use tokio::sync::Notify;

use berth_config::OnlineGcConfig;
use berth_registry::gc::OnlineGcOptions;
use berth_registry::{Registry, RegistryError};

/// The shortest interval honoured, so a typo such as `interval: 0s` cannot spin.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

struct GcMetrics {
    runs: IntCounterVec,
    bytes_freed: IntCounter,
    trashed: IntCounter,
    deleted: IntCounter,
    last_run: Gauge,
}

#[allow(clippy::expect_used)] // Registration only fails on a duplicate name: a programming error.
static METRICS: LazyLock<GcMetrics> = LazyLock::new(|| GcMetrics {
    runs: register_int_counter_vec!(
        "berth_gc_runs_total",
        "Online garbage collection runs, by result (ok, failed, skipped).",
        &["result"]
    )
    .expect("register berth_gc_runs_total"),
    bytes_freed: register_int_counter!(
        "berth_gc_bytes_freed_total",
        "Bytes of blobs deleted for good by online garbage collection."
    )
    .expect("register berth_gc_bytes_freed_total"),
    trashed: register_int_counter!(
        "berth_gc_blobs_trashed_total",
        "Unused blobs moved to the trash by online garbage collection."
    )
    .expect("register berth_gc_blobs_trashed_total"),
    deleted: register_int_counter!(
        "berth_gc_blobs_deleted_total",
        "Trashed blobs deleted for good by online garbage collection."
    )
    .expect("register berth_gc_blobs_deleted_total"),
    last_run: register_gauge!(
        "berth_gc_last_run_seconds",
        "How long the latest online garbage collection run took."
    )
    .expect("register berth_gc_last_run_seconds"),
});

/// Starts the collector when `storage.maintenance.gc.enabled` is set. The returned handle
/// starts a run at once when notified (the disk watermark uses it).
pub fn spawn(
    config: &OnlineGcConfig,
    registry: Arc<Registry>,
    jobs: Arc<crate::cluster::Jobs>,
) -> Option<Arc<Notify>> {
    if !config.enabled {
        return None;
    }
    if config.delay < Duration::from_secs(60) {
        tracing::warn!(
            delay_seconds = config.delay.as_secs_f64(),
            "storage.maintenance.gc.delay is very short: it must be far longer than any request takes, or a stalled push may reference a blob the collector has just deleted; use at least several minutes in production"
        );
    }
    let wake = Arc::new(Notify::new());
    tokio::spawn(run(registry, jobs, config.clone(), wake.clone()));
    Some(wake)
}

/// The first run waits a random part of the interval (at most an hour), so that nodes
/// restarted together do not all collect at once; then one run every `interval`.
async fn run(
    registry: Arc<Registry>,
    jobs: Arc<crate::cluster::Jobs>,
    config: OnlineGcConfig,
    wake: Arc<Notify>,
) {
    let interval = config.interval.max(MIN_INTERVAL);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = interval.min(Duration::from_secs(3600));
    tokio::select! {
        _ = tokio::time::sleep(spread.mul_f64(f64::from(nanos) / 1e9)) => {}
        _ = wake.notified() => {}
    }
    let options = OnlineGcOptions {
        delay: config.delay,
        dry_run: config.dryrun,
    };
    loop {
        if jobs.may_run("online garbage collection") {
            collect(&registry, options).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {
                tracing::info!("online garbage collection starts early: the disk is above its refuse mark");
            }
        }
    }
}

/// One run, logged: what moved to the trash, what came back, what was deleted for good.
async fn collect(registry: &Registry, options: OnlineGcOptions) {
    let dry_run = options.dry_run;
    let metrics = &*METRICS;
    if registry.read_only() {
        tracing::info!("online garbage collection skipped: read-only mode is on");
        metrics.runs.with_label_values(&["skipped"]).inc();
        return;
    }
    let started = Instant::now();
    match registry.collect_garbage_online(options).await {
        Ok(report) => {
            metrics.runs.with_label_values(&["ok"]).inc();
            metrics.last_run.set(started.elapsed().as_secs_f64());
            if !dry_run {
                metrics.bytes_freed.inc_by(report.bytes_freed());
                metrics.trashed.inc_by(report.trashed.len() as u64);
                metrics.deleted.inc_by(report.purged.len() as u64);
            }
            for (digest, size) in &report.trashed {
                tracing::debug!(%digest, size, dry_run, "blob moved to the trash");
            }
            for (digest, size) in &report.purged {
                tracing::info!(%digest, size, dry_run, "blob deleted");
            }
            for digest in report.restored.iter().chain(&report.put_back) {
                tracing::info!(%digest, dry_run, "blob restored from the trash");
            }
            tracing::info!(
                marked = report.blobs_marked,
                kept_recent = report.kept_recent,
                trashed = report.trashed.len(),
                purged = report.purged.len(),
                restored = report.restored.len() + report.put_back.len(),
                restored_by_requests = registry.trash_restores(),
                waiting_in_trash = report.waiting,
                bytes_freed = report.bytes_freed(),
                dry_run,
                millis = started.elapsed().as_millis() as u64,
                "online garbage collection done"
            );
        }
        Err(RegistryError::ReadOnly) => {
            metrics.runs.with_label_values(&["skipped"]).inc();
            tracing::info!("online garbage collection stopped: read-only mode was switched on")
        }
        Err(e) => {
            metrics.runs.with_label_values(&["failed"]).inc();
            tracing::error!(error = %e, "online garbage collection failed")
        }
    }
}
