//! `scan.enabled` (Berth extension): the scanner of the `scan:` section run after each push of
//! a tagged image, outside the request: the push's event is handed to a bounded queue (a full
//! queue drops the scan, counted and logged, never the push), scans run `scan.concurrency` at a
//! time within `scan.timeout`, the scanner reads the image from this server
//! (`127.0.0.1:PORT/REPO@DIGEST`) and the report is stored as a referrer straight into the
//! storage (`berth_copy::scan`). Failures are logged and counted, and never affect the push.
//!
//! Metrics: `berth_scan_total{result}` (`ok`, `failed`, `dropped`).

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, OnceLock};

use berth_config::ScanConfig;
use berth_copy::endpoint::{EndOptions, ManifestBlob};
use berth_copy::local::{LocalRef, LocalTarget};
use berth_copy::scan::{run_and_attach, ScanOptions};
use berth_notify::{Action, Event, Listener};
use berth_oci::{media_types as mt, Digest, Reference, RepoName};
use berth_registry::Registry;
use prometheus::{register_int_counter_vec, IntCounterVec};
use tokio::sync::{mpsc, Semaphore};

/// Pushes waiting for a scan; more are dropped (and counted).
const QUEUE: usize = 256;

#[allow(clippy::expect_used)] // Registration only fails on a duplicate name: a programming error.
static SCANS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "berth_scan_total",
        "Scans after pushes, by result (ok, failed, dropped: the queue was full).",
        &["result"]
    )
    .expect("register berth_scan_total")
});

/// The address the scanner reaches this server at, known once the listener is bound.
pub type ScanAddr = Arc<OnceLock<String>>;

/// Where a scanner reaches a server listening on `local` (a wildcard address: loopback).
pub fn reachable(local: SocketAddr) -> String {
    let ip = local.ip();
    let host = if ip.is_unspecified() {
        if ip.is_ipv4() {
            "127.0.0.1".to_owned()
        } else {
            "[::1]".to_owned()
        }
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("{host}:{}", local.port())
}

/// A scan to run: the repository and the manifest pushed.
struct Pushed {
    repo: String,
    digest: String,
}

/// The listener for the notifier when `scan.enabled` is set (its worker is started here).
pub fn listener(config: &ScanConfig, registry: Arc<Registry>, addr: ScanAddr) -> Option<Listener> {
    if !config.enabled {
        return None;
    }
    LazyLock::force(&SCANS);
    let (tx, rx) = mpsc::channel::<Pushed>(QUEUE);
    let options = ScanOptions {
        command: config.command.clone(),
        format: config.format,
        timeout: config.timeout,
        concurrency: config.concurrency as usize,
        registry: EndOptions::default(),
    };
    tokio::spawn(work(rx, registry, addr, options));
    tracing::info!(
        command = config.command,
        format = config.format.as_str(),
        "scanning images after each push"
    );
    Some(Listener(Arc::new(move |event: &Event| {
        let image = matches!(
            event.target.media_type.as_str(),
            mt::OCI_MANIFEST | mt::OCI_INDEX | mt::DOCKER_MANIFEST | mt::DOCKER_MANIFEST_LIST
        );
        if event.action != Action::Push || event.target.tag.is_empty() || !image {
            return;
        }
        let pushed = Pushed {
            repo: event.target.repository.clone(),
            digest: event.target.digest.clone(),
        };
        if tx.try_send(pushed).is_err() {
            SCANS.with_label_values(&["dropped"]).inc();
            tracing::warn!(
                repository = event.target.repository,
                digest = event.target.digest,
                "scan queue full; this push is not scanned"
            );
        }
    })))
}

async fn work(
    mut rx: mpsc::Receiver<Pushed>,
    registry: Arc<Registry>,
    addr: ScanAddr,
    options: ScanOptions,
) {
    let options = Arc::new(options);
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    while let Some(pushed) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (registry, addr, options) = (registry.clone(), addr.clone(), options.clone());
        tokio::spawn(async move {
            let result = scan(&pushed, registry, &addr, &options).await;
            drop(permit);
            match result {
                Ok(Some(referrer)) => {
                    SCANS.with_label_values(&["ok"]).inc();
                    tracing::info!(repository = pushed.repo, digest = pushed.digest, %referrer, "scan report attached");
                }
                Ok(None) => {}
                Err(e) => {
                    SCANS.with_label_values(&["failed"]).inc();
                    tracing::warn!(repository = pushed.repo, digest = pushed.digest, error = %e, "scan failed");
                }
            }
        });
    }
}

/// Scans one pushed image; `None` for what is not scanned (an artifact with a subject).
async fn scan(
    pushed: &Pushed,
    registry: Arc<Registry>,
    addr: &ScanAddr,
    options: &ScanOptions,
) -> anyhow::Result<Option<Digest>> {
    let repo: RepoName = pushed.repo.parse()?;
    let digest: Digest = pushed.digest.parse()?;
    let stored = registry
        .get_manifest(&repo, &Reference::Digest(digest.clone()))
        .await?;
    let parsed = berth_oci::Manifest::parse(&stored.body, Some(&stored.media_type))?;
    if parsed.subject.is_some() {
        return Ok(None);
    }
    let Some(host) = addr.get() else {
        anyhow::bail!("the server's address is not known (a unix socket): nothing to scan from");
    };
    let subject = ManifestBlob {
        body: stored.body,
        media_type: stored.media_type,
        digest,
    };
    let pinned = format!("{host}/{repo}@{}", subject.digest);
    let target = LocalTarget::new(
        registry,
        LocalRef {
            repo,
            reference: None,
        },
    );
    let attached = run_and_attach(&pinned, &subject, &target, options).await?;
    Ok(Some(attached.referrer))
}
