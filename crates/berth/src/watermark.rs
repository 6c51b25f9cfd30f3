//! Disk watermarks (`storage.maintenance.diskwatermark`, a Berth extension): the filesystem
//! holding the root directory is checked on an interval. Above `warn` percent used, a warning
//! is logged once per crossing; above `refuse` percent, new upload data is refused with a
//! `DENIED` error that says the disk is full, while pulls, deletes and garbage collection go
//! on. Crossing back below the mark lifts the refusal at the next check. Crossing the refuse
//! mark also starts the online garbage collector at once, when it is enabled.
//!
//! Percent used is computed as `df` does: used / (used + available to unprivileged users), so
//! the blocks reserved for root count as full, as they are for a registry not running as root.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use berth_config::DiskWatermarkConfig;
use berth_registry::Registry;
use prometheus::{register_int_gauge, IntGauge};

#[allow(clippy::expect_used)] // Registration only fails on a duplicate name: a programming error.
static LEVEL: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "berth_disk_watermark_level",
        "0: below the warn mark, 1: above warn, 2: above refuse (new uploads refused)."
    )
    .expect("register berth_disk_watermark_level")
});

/// Where the disk stands against the marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok = 0,
    Warn = 1,
    Refuse = 2,
}

/// Starts the watcher when the section is enabled and storage is a filesystem.
/// `gc`, when the online collector runs, is woken when the disk crosses the refuse mark.
pub fn start(
    config: &DiskWatermarkConfig,
    root: Option<PathBuf>,
    registry: Arc<Registry>,
    gc: Option<Arc<tokio::sync::Notify>>,
) {
    if !config.enabled {
        return;
    }
    let Some(root) = root else {
        tracing::warn!(
            "storage.maintenance.diskwatermark applies to filesystem storage only; ignored"
        );
        return;
    };
    let config = config.clone();
    tokio::spawn(async move {
        let mut level = Level::Ok;
        let mut ticker =
            tokio::time::interval(config.interval.max(std::time::Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(used) = percent_used(&root) else {
                continue;
            };
            let now = if used >= f64::from(config.refuse) {
                Level::Refuse
            } else if used >= f64::from(config.warn) {
                Level::Warn
            } else {
                Level::Ok
            };
            LEVEL.set(now as i64);
            if now == level {
                continue;
            }
            match now {
                Level::Refuse => {
                    let reason = format!(
                        "the registry's disk is {used:.0}% full (refuse mark {}%): new uploads are refused until space is freed (delete images, then run garbage collection)",
                        config.refuse
                    );
                    tracing::error!(
                        used_percent = used,
                        mark = config.refuse,
                        "disk above the refuse mark: new uploads refused"
                    );
                    registry.set_space_refusal(Some(reason));
                    if let Some(gc) = &gc {
                        gc.notify_one();
                    }
                }
                Level::Warn => {
                    tracing::warn!(
                        used_percent = used,
                        mark = config.warn,
                        "disk above the warn mark"
                    );
                    registry.set_space_refusal(None);
                }
                Level::Ok => {
                    tracing::info!(used_percent = used, "disk below its watermarks again");
                    registry.set_space_refusal(None);
                }
            }
            level = now;
        }
    });
}

/// Percent of the filesystem in use, as `df` reports it.
fn percent_used(root: &std::path::Path) -> Option<f64> {
    let stat = rustix::fs::statvfs(root)
        .map_err(|e| tracing::warn!(error = %e, root = %root.display(), "cannot read disk usage"))
        .ok()?;
    let used = stat.f_blocks.saturating_sub(stat.f_bfree) as f64;
    let usable = used + stat.f_bavail as f64;
    (usable > 0.0).then(|| 100.0 * used / usable)
}
