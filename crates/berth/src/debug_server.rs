//! registry:2's debug server (`http.debug.addr`): `/debug/health` lists the failing health
//! checks (`200 {}` when all pass, `503` with `{"check": "error"}` otherwise), and with
//! `http.debug.prometheus.enabled` the metrics path (default `/metrics`) serves every metric in
//! Prometheus' text format. It is a separate listener so that metrics and health stay off the
//! public port, as in registry:2.
//!
//! Besides Distribution's metrics (registered by the crates that record them), this module
//! keeps Berth's storage gauges: `berth_storage_bytes`, `berth_storage_blobs`,
//! `berth_repositories`, `berth_uploads_in_progress` (a walk of the store on scrape, skipped
//! while the previous walk is recent: see [`WALK_SHARE`]), and `berth_disk_free_bytes` / `berth_disk_size_bytes` of the
//! filesystem holding the root directory (read on every scrape).

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_api::health::HealthState;
use berth_registry::Registry;
use prometheus::{register_int_gauge, IntGauge};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// A walk of the store is reused until this many times its own duration has passed, so
/// scrapes spend at most about a tenth of the time walking: a small store is walked on every
/// scrape, one that takes 2 s to walk at most every 20 s.
const WALK_SHARE: u32 = 10;

struct DebugState {
    health: Arc<HealthState>,
    registry: Arc<Registry>,
    /// The filesystem root directory, for disk space gauges.
    root: Option<PathBuf>,
    /// Who runs the storage walk (see [`DebugOptions::jobs`]).
    jobs: Arc<crate::cluster::Jobs>,
    /// When the storage gauges were last refreshed, and how long that walk took.
    refreshed: Mutex<Option<(Instant, Duration)>>,
}

/// What the debug server serves.
pub struct DebugOptions {
    /// `http.debug.addr`, as [`berth_config::Config::debug_listen_addr`] resolves it.
    pub addr: String,
    /// `http.debug.prometheus.path` when metrics are enabled.
    pub metrics_path: Option<String>,
    /// The filesystem driver's root directory, if any.
    pub root: Option<PathBuf>,
    /// Whether this node runs the storage walk behind the storage gauges: nodes sharing a
    /// storage leave it to the jobs runner (its gauges are the cluster's; take `max`).
    pub jobs: Arc<crate::cluster::Jobs>,
}

/// Binds the debug address, prints where it listens, and serves it in the background.
pub async fn start(
    options: DebugOptions,
    health: Arc<HealthState>,
    registry: Arc<Registry>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&options.addr)
        .await
        .with_context(|| format!("cannot listen on http.debug.addr {}", options.addr))?;
    let local = listener
        .local_addr()
        .context("debug listener has no address")?;
    let state = Arc::new(DebugState {
        health,
        registry,
        root: options.root,
        jobs: options.jobs,
        refreshed: Mutex::new(None),
    });
    let mut router = Router::new().route("/debug/health", get(health_status));
    if let Some(path) = &options.metrics_path {
        router = router.route(path, get(metrics));
    }
    let router = router.with_state(state);
    // Tests read this line to learn the port when binding port 0.
    println!("berth debug server listening on http://{local}");
    tracing::info!(addr = %local, metrics = ?options.metrics_path, "debug server listening");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "debug server stopped");
        }
    });
    Ok(())
}

async fn health_status(State(state): State<Arc<DebugState>>) -> Response {
    let failures = state.health.failures();
    let status = if failures.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(&failures).unwrap_or_else(|_| "{}".to_owned());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(state): State<Arc<DebugState>>) -> Response {
    refresh_gauges(&state).await;
    let encoder = prometheus::TextEncoder::new();
    match encoder.encode_to_string(&prometheus::gather()) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

struct Gauges {
    bytes: IntGauge,
    blobs: IntGauge,
    repositories: IntGauge,
    uploads: IntGauge,
    disk_free: IntGauge,
    disk_size: IntGauge,
}

#[allow(clippy::expect_used)] // Registration only fails on a duplicate name: a programming error.
static GAUGES: LazyLock<Gauges> = LazyLock::new(|| {
    let gauge = |name: &str, help: &str| register_int_gauge!(name, help).expect("register gauge");
    Gauges {
        bytes: gauge(
            "berth_storage_bytes",
            "Bytes held by blobs (each blob counted once).",
        ),
        blobs: gauge("berth_storage_blobs", "Blobs in storage."),
        repositories: gauge(
            "berth_repositories",
            "Repositories with at least a manifest.",
        ),
        uploads: gauge(
            "berth_uploads_in_progress",
            "Upload sessions started and not finished or purged.",
        ),
        disk_free: gauge(
            "berth_disk_free_bytes",
            "Bytes available to Berth on the filesystem of the root directory.",
        ),
        disk_size: gauge(
            "berth_disk_size_bytes",
            "Size of the filesystem of the root directory.",
        ),
    }
});

async fn refresh_gauges(state: &DebugState) {
    let gauges = &*GAUGES;
    if let Some(root) = &state.root {
        if let Ok(stat) = rustix::fs::statvfs(root) {
            let block = stat.f_frsize.max(1) as i64;
            gauges
                .disk_free
                .set((stat.f_bavail as i64).saturating_mul(block));
            gauges
                .disk_size
                .set((stat.f_blocks as i64).saturating_mul(block));
        }
    }
    if !state.jobs.may_run("storage walk for metrics") {
        return;
    }
    let mut refreshed = state.refreshed.lock().await;
    if refreshed.is_some_and(|(at, took)| at.elapsed() < took * WALK_SHARE) {
        return;
    }
    let started = Instant::now();
    match state.registry.storage_summary().await {
        Ok(summary) => {
            gauges.bytes.set(summary.bytes as i64);
            gauges.blobs.set(summary.blobs as i64);
            gauges.repositories.set(summary.repositories as i64);
            gauges.uploads.set(summary.uploads as i64);
            *refreshed = Some((Instant::now(), started.elapsed()));
        }
        Err(e) => tracing::warn!(error = %e, "cannot walk storage for the metrics"),
    }
}
