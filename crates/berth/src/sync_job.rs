//! `sync` (Berth extension): the skopeo sync file of the configuration, run by `berth serve`
//! into its own storage, at start and then every `sync.interval`, on the node that runs the
//! background jobs, never in read-only mode. Each run is `berth sync` with Berth's storage as
//! the destination (`berth_copy::sync`), so an unchanged image costs a lookup and moves
//! nothing; each run logs one line, failed images one warning each.
//!
//! Metrics: `berth_sync_runs_total{result}` (`ok`, `failed`), `berth_sync_images_total{result}`
//! (`copied`, `unchanged`, `failed`), `berth_sync_bytes_total` and
//! `berth_sync_last_run_seconds`.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use berth_config::SyncConfig;
use berth_copy::sync::{Destination, SyncOptions};
use berth_copy::{CopyOptions, Progress, ProgressMode};
use berth_registry::Registry;
use prometheus::{
    register_gauge, register_int_counter, register_int_counter_vec, Gauge, IntCounter,
    IntCounterVec,
};

struct SyncMetrics {
    runs: IntCounterVec,
    images: IntCounterVec,
    bytes: IntCounter,
    last_run: Gauge,
}

#[allow(clippy::expect_used)] // Registration only fails on a duplicate name: a programming error.
static METRICS: LazyLock<SyncMetrics> = LazyLock::new(|| SyncMetrics {
    runs: register_int_counter_vec!(
        "berth_sync_runs_total",
        "Runs of the sync file, by result (ok: every image copied or unchanged).",
        &["result"]
    )
    .expect("register berth_sync_runs_total"),
    images: register_int_counter_vec!(
        "berth_sync_images_total",
        "Images of sync runs, by result (copied, unchanged, failed).",
        &["result"]
    )
    .expect("register berth_sync_images_total"),
    bytes: register_int_counter!(
        "berth_sync_bytes_total",
        "Bytes of blobs copied by sync runs."
    )
    .expect("register berth_sync_bytes_total"),
    last_run: register_gauge!(
        "berth_sync_last_run_seconds",
        "How long the latest sync run took."
    )
    .expect("register berth_sync_last_run_seconds"),
});

/// Starts the periodic sync when `sync.file` is set. A sync file that cannot be read or
/// parsed stops the server from starting, as a bad configuration does.
pub fn spawn(
    config: &SyncConfig,
    registry: Arc<Registry>,
    jobs: Arc<crate::cluster::Jobs>,
) -> anyhow::Result<()> {
    check(config)?;
    let Some(file) = config.file.clone() else {
        return Ok(());
    };
    LazyLock::force(&METRICS);
    let options = SyncOptions {
        dest: Destination::Local {
            registry: registry.clone(),
            prefix: config.prefix.clone(),
        },
        authfile: None,
        copy: CopyOptions {
            referrers: config.referrers,
            ..CopyOptions::default()
        },
        images_at_once: config.images_at_once as usize,
        scoped: config.scoped,
    };
    tokio::spawn(schedule(file, options, registry, jobs, config.interval));
    Ok(())
}

/// Reads and parses `sync.file`, if set (`serve` and `berth config check`).
pub fn check(config: &SyncConfig) -> anyhow::Result<()> {
    let Some(file) = &config.file else {
        return Ok(());
    };
    let yaml = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("sync.file {}: {e}", file.display()))?;
    berth_copy::sync::parse_file(&yaml)
        .map_err(|e| anyhow::anyhow!("sync.file {}: {e}", file.display()))?;
    Ok(())
}

async fn schedule(
    file: PathBuf,
    options: SyncOptions,
    registry: Arc<Registry>,
    jobs: Arc<crate::cluster::Jobs>,
    interval: Duration,
) {
    loop {
        if registry.read_only() {
            tracing::info!("sync skipped: read-only mode is on");
        } else if jobs.may_run("sync") {
            run_logged(&file, &options).await;
        }
        tokio::time::sleep(interval).await;
    }
}

async fn run_logged(file: &std::path::Path, options: &SyncOptions) {
    let started = Instant::now();
    let sections = match std::fs::read_to_string(file)
        .map_err(|e| format!("{}: {e}", file.display()))
        .and_then(|yaml| berth_copy::sync::parse_file(&yaml).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            METRICS.runs.with_label_values(&["failed"]).inc();
            tracing::error!(error = %e, "sync failed: cannot read the sync file");
            return;
        }
    };
    // Per-image lines would flood the log: the run's line and failures say what matters.
    let progress = Progress::new(ProgressMode::Quiet);
    let report = match berth_copy::sync::run(&sections, options, &progress).await {
        Ok(r) => r,
        Err(e) => {
            METRICS.runs.with_label_values(&["failed"]).inc();
            tracing::error!(error = %e, "sync failed");
            return;
        }
    };
    let unchanged = report.images.iter().filter(|(_, s)| s.unchanged).count();
    let copied = report.images.len() - unchanged;
    let bytes: u64 = report.images.iter().map(|(_, s)| s.bytes_copied).sum();
    let blobs: u64 = report.images.iter().map(|(_, s)| s.blobs_copied).sum();
    for (image, e) in &report.failures {
        tracing::warn!(image, error = %e, "sync: image failed");
    }
    let m = &METRICS;
    m.images
        .with_label_values(&["copied"])
        .inc_by(copied as u64);
    m.images
        .with_label_values(&["unchanged"])
        .inc_by(unchanged as u64);
    m.images
        .with_label_values(&["failed"])
        .inc_by(report.failures.len() as u64);
    m.bytes.inc_by(bytes);
    m.last_run.set(started.elapsed().as_secs_f64());
    let result = if report.failures.is_empty() {
        "ok"
    } else {
        "failed"
    };
    m.runs.with_label_values(&[result]).inc();
    tracing::info!(
        copied,
        unchanged,
        failed = report.failures.len(),
        blobs,
        bytes,
        millis = started.elapsed().as_millis() as u64,
        "sync done"
    );
}
