//! Storage use per repository for the UI (sizes, push dates, sorting by them, the storage
//! page): the registry's usage report ([`berth_registry::usage`], the same one `berth du` and
//! `/v2/_berth/usage` give), kept with the time it was made. A page never waits for a walk of
//! the store once a report exists: an old one (past [`REFRESH_AFTER`]) is shown with its age
//! while one background walk makes the next.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_registry::usage::{RepoUsage, UsageReport};
use berth_registry::Registry;

/// Age after which a page asks for a new report (and shows the old one meanwhile).
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);

/// A usage report and when it was made.
#[derive(Clone)]
pub struct Snapshot {
    /// When the walk finished.
    pub made: SystemTime,
    /// The report.
    pub report: Arc<UsageReport>,
    /// Index of each repository in `report.repositories`.
    by_name: Arc<HashMap<String, usize>>,
}

impl Snapshot {
    /// One repository's use, when the report has it.
    pub fn repository(&self, name: &str) -> Option<&RepoUsage> {
        self.by_name
            .get(name)
            .and_then(|&i| self.report.repositories.get(i))
    }

    /// How old the report is, for people: `12 s`, `3 min`.
    pub fn age(&self) -> String {
        let secs = self.made.elapsed().unwrap_or_default().as_secs();
        if secs < 120 {
            format!("{secs} s")
        } else {
            format!("{} min", secs / 60)
        }
    }
}

/// The latest report, and whether a walk is under way.
#[derive(Default)]
pub struct UsageView {
    latest: Mutex<Option<Snapshot>>,
    refreshing: AtomicBool,
}

impl UsageView {
    /// The latest report, however old; starts a background walk when there is none or it is
    /// older than [`REFRESH_AFTER`] (one walk at a time).
    pub fn current(self: &Arc<Self>, registry: &Arc<Registry>) -> Option<Snapshot> {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let stale = latest
            .as_ref()
            .is_none_or(|s| s.made.elapsed().unwrap_or_default() > REFRESH_AFTER);
        if stale && !self.refreshing.swap(true, Ordering::AcqRel) {
            let (view, registry) = (self.clone(), registry.clone());
            tokio::spawn(async move {
                match registry.usage_shared().await {
                    Ok(report) => {
                        let by_name = report
                            .repositories
                            .iter()
                            .enumerate()
                            .map(|(i, r)| (r.name.clone(), i))
                            .collect();
                        let snapshot = Snapshot {
                            made: SystemTime::now(),
                            report,
                            by_name: Arc::new(by_name),
                        };
                        *view.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
                    }
                    Err(e) => tracing::error!(error = %e, "web UI: cannot compute storage use"),
                }
                view.refreshing.store(false, Ordering::Release);
            });
        }
        latest
    }

    /// [`UsageView::current`], waiting up to `wait` for the first report.
    pub async fn wait(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        wait: Duration,
    ) -> Option<Snapshot> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(snapshot) = self.current(registry) {
                return Some(snapshot);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
