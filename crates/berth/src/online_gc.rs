//! `storage.maintenance.gc` (Berth extension): the online garbage collector as a background
//! task. Each run marks, purges old trash entries and moves unused blobs to the trash while
//! the registry keeps serving (`berth_registry::gc` explains why that is safe); it never runs
//! while read-only mode is on. The disk watermark can wake it early (see `watermark.rs`).
//!
//! Metrics: `berth_gc_runs_total{result}` (`ok`, `failed`, `skipped`),
//! `berth_gc_bytes_freed_total`, `berth_gc_blobs_trashed_total`, `berth_gc_blobs_deleted_total`
//! and `berth_gc_last_run_seconds`.

use std::sync::atomic::{AtomicBool, Ordering};
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
            let _ = collect(&registry, options).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {
                tracing::info!("online garbage collection starts early: the disk is above its refuse mark");
            }
        }
    }
}

/// Set while a run is under way in this process: a run asked for from the web UI and a
/// scheduled one do not overlap (overlapping runs would be safe, only wasted work).
static RUNNING: AtomicBool = AtomicBool::new(false);

/// One run, logged and recorded for the web UI: what moved to the trash, what came back,
/// what was deleted for good. Returns the summary, or why it did not run.
pub(crate) async fn collect(
    registry: &Registry,
    options: OnlineGcOptions,
) -> Result<String, String> {
    if RUNNING.swap(true, Ordering::AcqRel) {
        return Err("a garbage collection is already running".to_owned());
    }
    let result = collect_once(registry, options).await;
    RUNNING.store(false, Ordering::Release);
    result
}

async fn collect_once(registry: &Registry, options: OnlineGcOptions) -> Result<String, String> {
    let dry_run = options.dry_run;
    let metrics = &*METRICS;
    if registry.read_only() {
        tracing::info!("online garbage collection skipped: read-only mode is on");
        metrics.runs.with_label_values(&["skipped"]).inc();
        return Err("skipped: read-only mode is on".to_owned());
    }
    let started = Instant::now();
    let result = match registry.collect_garbage_online(options).await {
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
            Ok(summary(&report, dry_run))
        }
        Err(RegistryError::ReadOnly) => {
            metrics.runs.with_label_values(&["skipped"]).inc();
            tracing::info!("online garbage collection stopped: read-only mode was switched on");
            Err("stopped: read-only mode was switched on".to_owned())
        }
        Err(e) => {
            metrics.runs.with_label_values(&["failed"]).inc();
            tracing::error!(error = %e, "online garbage collection failed");
            Err("failed; the server log has the details".to_owned())
        }
    };
    match &result {
        Ok(summary) => crate::job_log::record(&crate::job_log::GC, true, summary.clone()),
        Err(why) => crate::job_log::record(&crate::job_log::GC, false, why.clone()),
    }
    result
}

/// A run's figures in one line.
pub(crate) fn summary(report: &berth_registry::gc::OnlineGcReport, dry_run: bool) -> String {
    let trashed: u64 = report.trashed.iter().map(|(_, size)| size).sum();
    format!(
        "{}{} blobs in use; {} unused blobs ({}) {} to the trash, {} kept as recently used; {} trashed blobs ({}) {} for good, {} waiting for the delay; {} restored",
        if dry_run { "dry run: " } else { "" },
        report.blobs_marked,
        report.trashed.len(),
        crate::du::human(trashed),
        if dry_run { "would move" } else { "moved" },
        report.kept_recent,
        report.purged.len(),
        crate::du::human(report.bytes_freed()),
        if dry_run { "would be deleted" } else { "deleted" },
        report.waiting,
        report.restored.len() + report.put_back.len(),
    )
}
