//! What the web UI's administration pages see and do ([`berth_ui::Admin`]): the version, the
//! masked configuration, the maintenance jobs' last runs, and dry runs of garbage collection
//! and retention through the very code the scheduled jobs run (`online_gc::collect`,
//! `Registry::apply_retention`), so a preview is exactly what a run would do at that moment.

use std::collections::HashMap;
use std::sync::Arc;

use berth_config::Config;
use berth_registry::gc::OnlineGcOptions;
use berth_registry::retention::RetentionPolicy;
use berth_registry::Registry;
use berth_ui::{JobRun, JobState, Preview};

use crate::cluster::Jobs;
use crate::job_log::{self, LastRun};

/// The binary's side of the administration pages.
pub struct UiAdmin {
    registry: Arc<Registry>,
    config: Arc<Config>,
    jobs: Arc<Jobs>,
    /// The configured retention policies, compiled (empty when none).
    policies: Vec<RetentionPolicy>,
    /// One dry run at a time: each walks the whole store, and on a registry without `auth`
    /// anybody may ask for one, so asking again and again queues instead of multiplying walks.
    previews: tokio::sync::Mutex<()>,
}

impl UiAdmin {
    /// The admin view of a running server.
    pub fn new(registry: Arc<Registry>, config: &Config, jobs: Arc<Jobs>) -> anyhow::Result<Self> {
        let retention = &config.storage.maintenance.retention;
        Ok(UiAdmin {
            registry,
            config: Arc::new(config.clone()),
            jobs,
            policies: crate::retention::policies(retention)?,
            previews: tokio::sync::Mutex::new(()),
        })
    }

    /// The collector's options: the configured delay (its default when online GC is off).
    fn gc_options(&self, dry_run: bool) -> OnlineGcOptions {
        OnlineGcOptions {
            delay: self.config.storage.maintenance.gc.delay,
            dry_run,
        }
    }
}

fn run(last: Option<LastRun>) -> Option<JobRun> {
    last.map(|l| JobRun {
        finished: l.finished,
        ok: l.ok,
        summary: l.summary,
    })
}

#[async_trait::async_trait]
impl berth_ui::Admin for UiAdmin {
    fn version(&self) -> String {
        format!("berth {}", env!("CARGO_PKG_VERSION"))
    }

    fn masked_config(&self) -> String {
        self.config.to_masked_yaml()
    }

    fn jobs(&self) -> Vec<JobState> {
        let m = &self.config.storage.maintenance;
        let here = if self.jobs.runs_here() {
            ""
        } else {
            " (on another node of the cluster)"
        };
        let gc = if m.gc.enabled {
            format!(
                "every {}, delay {}{}{here}",
                humantime::format_duration(m.gc.interval),
                humantime::format_duration(m.gc.delay),
                if m.gc.dryrun { ", dry run" } else { "" }
            )
        } else {
            "off (storage.maintenance.gc)".to_owned()
        };
        let retention = if m.retention.enabled && !self.policies.is_empty() {
            format!(
                "every {}, {} {}{}{here}",
                humantime::format_duration(m.retention.interval),
                self.policies.len(),
                if self.policies.len() == 1 {
                    "policy"
                } else {
                    "policies"
                },
                if m.retention.dryrun { ", dry run" } else { "" }
            )
        } else {
            "off (storage.maintenance.retention)".to_owned()
        };
        vec![
            JobState {
                name: "garbage collection".to_owned(),
                schedule: gc,
                last: run(job_log::last(&job_log::GC)),
            },
            JobState {
                name: "retention".to_owned(),
                schedule: retention,
                last: run(job_log::last(&job_log::RETENTION)),
            },
        ]
    }

    fn cache_limits(&self) -> HashMap<String, u64> {
        let Some(proxy) = &self.config.proxy else {
            return HashMap::new();
        };
        proxy
            .upstreams
            .iter()
            .filter_map(|u| {
                u.cache
                    .maxsize
                    .or(proxy.cache.maxsize)
                    .map(|max| (u.host.clone(), max))
            })
            .collect()
    }

    async fn gc_preview(&self) -> Result<Preview, String> {
        let _one_at_a_time = self.previews.lock().await;
        let report = self
            .registry
            .collect_garbage_online(self.gc_options(true))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "web UI: garbage collection preview failed");
                "the preview failed; the server log has the details".to_owned()
            })?;
        let mut lines: Vec<String> = report
            .trashed
            .iter()
            .map(|(d, size)| format!("would move to the trash: {d} ({})", crate::du::human(*size)))
            .chain(report.purged.iter().map(|(d, size)| {
                format!("would delete for good: {d} ({})", crate::du::human(*size))
            }))
            .collect();
        // Sorted, so two previews diff cleanly (as `berth garbage-collect` prints them).
        lines.sort();
        Ok(Preview {
            lines,
            summary: crate::online_gc::summary(&report, true),
        })
    }

    async fn gc_run(&self) -> Result<Preview, String> {
        if !self.jobs.runs_here() {
            return Err(
                "This node does not run the cluster's maintenance jobs; run it on the node that does (berth cluster status names it)."
                    .to_owned(),
            );
        }
        let summary = crate::online_gc::collect(&self.registry, self.gc_options(false)).await?;
        Ok(Preview {
            lines: Vec::new(),
            summary,
        })
    }

    async fn retention_run(&self) -> Result<Preview, String> {
        if self.policies.is_empty() {
            return Err(
                "No retention policies are configured (storage.maintenance.retention.policies)."
                    .to_owned(),
            );
        }
        if !self.jobs.runs_here() {
            return Err(
                "This node does not run the cluster's maintenance jobs; run it on the node that does (berth cluster status names it)."
                    .to_owned(),
            );
        }
        // A real run, whatever `dryrun` says for the scheduled ones: the admin asked for it
        // after seeing the preview.
        let (lines, summary) =
            crate::retention::run_logged(&self.registry, &self.policies, false).await?;
        Ok(Preview { lines, summary })
    }

    async fn retention_preview(&self) -> Result<Preview, String> {
        if self.policies.is_empty() {
            return Err(
                "No retention policies are configured (storage.maintenance.retention.policies)."
                    .to_owned(),
            );
        }
        let _one_at_a_time = self.previews.lock().await;
        let report = self
            .registry
            .apply_retention(&self.policies, true)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "web UI: retention preview failed");
                "the preview failed; the server log has the details".to_owned()
            })?;
        let mut lines: Vec<String> = report
            .deleted
            .iter()
            .map(|d| crate::retention::line(d, true))
            .collect();
        lines.extend(report.notes.iter().map(|n| format!("note: {n}")));
        Ok(Preview {
            lines,
            summary: crate::retention::summary(&report, true),
        })
    }
}
