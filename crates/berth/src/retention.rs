//! `storage.maintenance.retention` (Berth extension): the `berth retention` command and the
//! scheduled runs. Both call [`Registry::apply_retention`] (one code path, dry run or not);
//! retention deletes tags and untagged manifests only, the blobs stay until a garbage
//! collection (`berth garbage-collect`, or the online collector) removes them.
//!
//! The command also takes one policy from its own options ([`RuleArgs`]), applied instead of
//! the configured policies, for cleanup scripts that should not need a configuration edit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use berth_config::{Loaded, RetentionConfig, RetentionPolicyConfig};
use berth_oci::RepoPattern;
use berth_registry::retention::{Deletion, RetentionPolicy, RetentionReport};
use berth_registry::{Registry, RegistryError};
use regex::Regex;

use crate::setup;

/// The shortest interval honoured, so that `interval: 1ms` cannot spin.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Compiles the configured policies (already checked when the configuration was loaded).
pub fn policies(config: &RetentionConfig) -> anyhow::Result<Vec<RetentionPolicy>> {
    config.policies.iter().map(compile).collect()
}

/// Compiles one policy; a bad pattern or regex is named in the error.
fn compile(p: &RetentionPolicyConfig) -> anyhow::Result<RetentionPolicy> {
    let regexes = |list: &[String]| -> anyhow::Result<Vec<Regex>> {
        list.iter()
            .map(|r| Regex::new(r).with_context(|| format!("retention regex {r:?}")))
            .collect()
    };
    Ok(RetentionPolicy {
        repositories: p
            .repositories
            .iter()
            .map(|r| {
                RepoPattern::parse(r)
                    .map_err(|why| anyhow::anyhow!("repository pattern {r:?}: {why}"))
            })
            .collect::<anyhow::Result<_>>()?,
        keep_last: p.keep_last.map(|n| n as usize),
        older_than: p.older_than,
        keep_tags: regexes(&p.keep_tags)?,
        delete_tags: regexes(&p.delete_tags)?,
        delete_untagged: p.delete_untagged,
    })
}

/// `berth retention`'s own rules: one policy, applied instead of the configured ones.
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "Rules (one policy, used instead of the configured policies)")]
pub struct RuleArgs {
    /// Repositories the rules apply to: a name or a pattern (`*` one path segment, `**` any
    /// depth: 'ci/**', '**' for all). Repeatable; required with the other rules.
    #[arg(long = "repository", value_name = "PATTERN")]
    repositories: Vec<String>,
    /// Keep the newest N tags by push time (among those no --keep-tag/--delete-tag matched).
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Delete tags pushed longer ago than AGE (30d, 12h, 1d12h) and not kept by --keep-last.
    #[arg(long, value_name = "AGE", value_parser = berth_config::parse_age)]
    older_than: Option<Duration>,
    /// Always keep the tags this regex matches. Repeatable.
    #[arg(long = "keep-tag", value_name = "REGEX")]
    keep_tags: Vec<String>,
    /// Always delete the tags this regex matches (unless --keep-tag matches). Repeatable.
    #[arg(long = "delete-tag", value_name = "REGEX")]
    delete_tags: Vec<String>,
    /// Also delete the manifests no remaining tag reaches.
    #[arg(long)]
    delete_untagged: bool,
}

impl RuleArgs {
    /// The policy the options describe, or `None` when none was given.
    pub fn policy(self) -> anyhow::Result<Option<RetentionPolicy>> {
        let config = RetentionPolicyConfig {
            repositories: self.repositories,
            keep_last: self.keep_last,
            older_than: self.older_than,
            keep_tags: self.keep_tags,
            delete_tags: self.delete_tags,
            delete_untagged: self.delete_untagged,
        };
        if config == RetentionPolicyConfig::default() {
            return Ok(None);
        }
        // Unlike a configured policy (a warning), a command that can only do nothing, or
        // that would apply to every repository without saying so, is a mistake to stop on.
        if config.repositories.is_empty() {
            bail!(
                "retention rules need --repository PATTERN (repeatable; '**' for every repository)"
            );
        }
        if !config.deletes_anything() {
            bail!("--repository needs a rule that deletes: --keep-last, --older-than, --delete-tag or --delete-untagged");
        }
        compile(&config).map(Some)
    }
}

/// `berth retention`: applies `rules` (the command's own policy) or else the configured
/// policies once, printing what is (or would be) deleted.
pub async fn run_once(
    loaded: Loaded,
    rules: Option<RetentionPolicy>,
    dry_run: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    let retention = &loaded.config.storage.maintenance.retention;
    let policies = match rules {
        Some(policy) => vec![policy],
        None if retention.policies.is_empty() => {
            println!("no retention policies configured (storage.maintenance.retention.policies) and no rules given (--repository with --keep-last, --older-than, --delete-tag or --delete-untagged); nothing to do");
            return Ok(());
        }
        None => policies(retention)?,
    };
    let registry = setup::registry(&loaded.config).await?;
    // Like `berth garbage-collect`: usable on the data of a registry switched to read-only.
    registry.set_read_only(false);
    // Each line is printed as soon as its deletion is done, so an interrupted run shows
    // exactly what it deleted.
    let mut print = |deletion: &Deletion| {
        if !quiet {
            println!("{}", line(deletion, dry_run));
        }
    };
    let report = registry
        .apply_retention_with(&policies, dry_run, SystemTime::now(), &mut print)
        .await
        .context("retention stopped; what is listed above was deleted")?;
    if !quiet {
        for note in &report.notes {
            println!("note: {note}");
        }
    }
    println!("{}", summary(&report, dry_run));
    Ok(())
}

/// One line per deleted tag or manifest: the same text in a dry run and a real run except
/// for the verb, so the two outputs can be compared.
pub fn line(d: &Deletion, dry_run: bool) -> String {
    let verb = if dry_run { "would delete" } else { "deleted" };
    let time = humantime::format_rfc3339_seconds(d.pushed);
    match &d.tag {
        Some(tag) => format!(
            "{}: {verb} tag {tag} -> {} (pushed {time}): {}",
            d.repository, d.digest, d.reason
        ),
        None => format!(
            "{}: {verb} untagged manifest {} (written {time}): {}",
            d.repository, d.digest, d.reason
        ),
    }
}

/// The closing line.
pub fn summary(report: &RetentionReport, dry_run: bool) -> String {
    format!(
        "{} repositories checked, {} tags kept, {} tags and {} untagged manifests {}; their blobs stay until the next garbage collection",
        report.repositories,
        report.tags_kept,
        report.tags_deleted(),
        report.manifests_deleted(),
        if dry_run { "would be deleted" } else { "deleted" },
    )
}

/// Starts the scheduled runs when `storage.maintenance.retention.enabled` is set.
pub fn spawn(
    config: &RetentionConfig,
    registry: Arc<Registry>,
    jobs: Arc<crate::cluster::Jobs>,
) -> anyhow::Result<()> {
    if !config.enabled {
        return Ok(());
    }
    let policies = policies(config)?;
    if policies.is_empty() {
        tracing::warn!("storage.maintenance.retention is enabled but has no policies");
        return Ok(());
    }
    tokio::spawn(schedule(
        registry,
        jobs,
        policies,
        config.interval,
        config.dryrun,
    ));
    Ok(())
}

/// The first run waits a random part of the interval (at most an hour), so that nodes
/// restarted together do not all run at once; then one run every `interval`.
async fn schedule(
    registry: Arc<Registry>,
    jobs: Arc<crate::cluster::Jobs>,
    policies: Vec<RetentionPolicy>,
    interval: Duration,
    dry_run: bool,
) {
    let interval = interval.max(MIN_INTERVAL);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = interval.min(Duration::from_secs(3600));
    tokio::time::sleep(spread.mul_f64(f64::from(nanos) / 1e9)).await;
    loop {
        if jobs.may_run("retention") {
            if let Err(why) = run_logged(&registry, &policies, dry_run).await {
                tracing::debug!(why, "scheduled retention run did not complete");
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// One run at a time in this process, scheduled or asked for on the web UI's registry page.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Clears [`RUNNING`] when a run ends, however it ends.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// One run, logged and recorded for the web UI; never in read-only mode, never beside another
/// run. Returns a line per deleted tag or manifest and the summary, or why it did not run.
pub async fn run_logged(
    registry: &Registry,
    policies: &[RetentionPolicy],
    dry_run: bool,
) -> Result<(Vec<String>, String), String> {
    if RUNNING.swap(true, Ordering::AcqRel) {
        return Err("a retention run is already under way".to_owned());
    }
    let _running = Running;
    if registry.read_only() {
        tracing::info!("retention skipped: read-only mode is on");
        crate::job_log::record(
            &crate::job_log::RETENTION,
            false,
            "skipped: read-only mode is on".to_owned(),
        );
        return Err("skipped: read-only mode is on".to_owned());
    }
    let started = Instant::now();
    match registry.apply_retention(policies, dry_run).await {
        Ok(report) => {
            let lines: Vec<String> = report.deleted.iter().map(|d| line(d, dry_run)).collect();
            for l in &lines {
                tracing::info!(dry_run, "retention: {l}");
            }
            for note in &report.notes {
                tracing::info!("retention: {note}");
            }
            tracing::info!(
                repositories = report.repositories,
                tags_kept = report.tags_kept,
                tags_deleted = report.tags_deleted(),
                manifests_deleted = report.manifests_deleted(),
                dry_run,
                millis = started.elapsed().as_millis() as u64,
                "retention done"
            );
            let summary = summary(&report, dry_run);
            crate::job_log::record(&crate::job_log::RETENTION, true, summary.clone());
            Ok((lines, summary))
        }
        Err(RegistryError::ReadOnly) => {
            tracing::info!("retention stopped: read-only mode was switched on");
            crate::job_log::record(
                &crate::job_log::RETENTION,
                false,
                "stopped: read-only mode was switched on".to_owned(),
            );
            Err("stopped: read-only mode was switched on".to_owned())
        }
        Err(e) => {
            tracing::error!(error = %e, "retention failed");
            crate::job_log::record(
                &crate::job_log::RETENTION,
                false,
                "failed; the server log has the details".to_owned(),
            );
            Err("the run failed; the server log has the details".to_owned())
        }
    }
}
